package agent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/ipam"
)

// hasUp reports whether a container's veth exists with its host end up.
func (k *fakeKernel) hasUp(id, ifname string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.veths[pendingKey(id, ifname)]
	return ok && v.Up
}

// requireDetached checks what a detach's answer promises: the container is
// cut off at once, and its pair is gone once the background delete ran.
func (n *testNode) requireDetached(t *testing.T, id, ifname string) {
	t.Helper()
	if n.kernel.hasUp(id, ifname) {
		t.Fatalf("%s %s is still up after its detach answered", id, ifname)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.a.awaitDeleted(ctx, id); err != nil {
		t.Fatalf("waiting for the pair of %s to go: %v", id, err)
	}
	if n.kernel.has(id, ifname) {
		t.Fatalf("detach left the veth of %s %s", id, ifname)
	}
}

// A detach answers while the pair is still being deleted (cut off, address
// released); a new attach of the same container waits for the delete, then
// makes a fresh pair; listings and the garbage collection never see the
// half-deleted one.
func TestAttachWaitsForPendingDelete(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	ctx := context.Background()
	const id = "netns:4:4026540100"
	if _, err := n.a.attachNetns(ctx, ipam.Request{ID: id, IfName: "eth0", Name: "c1"}, "/run/netns/x"); err != nil {
		t.Fatal(err)
	}
	openGate := n.kernel.holdDeletes(t)
	if _, err := n.a.handleDetach(jsonRequest(t, api.DetachRequest{Target: "c1"})); err != nil {
		t.Fatal(err)
	}
	if !n.kernel.has(id, "eth0") || n.kernel.hasUp(id, "eth0") {
		t.Fatal("the detach answered without cutting the pair off, or deleted it before answering")
	}
	if !n.a.isDeleting(id, "eth0") {
		t.Fatal("the pair is not marked as being deleted")
	}
	if _, ok := n.a.ipam.Lookup(id, "eth0"); ok {
		t.Fatal("the detach answered without releasing the address")
	}
	if got, err := n.a.listContainers(ctx); err != nil || len(got) != 0 {
		t.Fatalf("the listing shows the half-deleted pair: %v %+v", err, got)
	}
	unlock := n.a.lockKernel()
	n.a.collectGarbage(ctx) // must leave the marked pair to the delete loop
	unlock()
	if !n.kernel.has(id, "eth0") {
		t.Fatal("the garbage collection deleted a pair being deleted")
	}

	// An attach of the same container waits for the delete...
	type result struct {
		at  api.Attachment
		err error
	}
	done := make(chan result, 1)
	go func() {
		at, err := n.a.attachNetns(ctx, ipam.Request{ID: id, IfName: "eth0", Name: "c1"}, "/run/netns/x")
		done <- result{at, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("the attach returned while the old pair was being deleted: %+v %v", r.at, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	// ...and one that gives up returns its context's error.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := n.a.attachNetns(short, ipam.Request{ID: id, IfName: "eth1", Name: "c1"}, "/run/netns/x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an attach with a short deadline: %v, want the deadline", err)
	}
	openGate()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !n.kernel.hasUp(id, "eth0") {
			t.Fatal("the attach after the delete left no live pair")
		}
		if n.a.isDeleting(id, "eth0") {
			t.Fatal("the mark outlived the delete")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the attach still waits after the delete")
	}
	n.checkLockRule(t)
}

// A pair left cut off without an allocation (a crash between a detach's
// answer and its delete) is deleted by the garbage collection; a down pair
// that still has its address is drift and stays.
func TestSweepCutOffPairs(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	ctx := context.Background()
	for _, id := range []string{"netns:4:4026540200", "netns:4:4026540201"} {
		if _, err := n.a.attachNetns(ctx, ipam.Request{ID: id, IfName: "eth0"}, "/run/netns/x"); err != nil {
			t.Fatal(err)
		}
	}
	unlock := n.a.lockKernel()
	for _, err := range n.kernel.CutOffMany(ctx, detachSpecs("netns:4:4026540200", "netns:4:4026540201")) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := n.a.ipam.Release("netns:4:4026540200", "eth0"); err != nil {
		t.Fatal(err)
	}
	n.a.collectGarbage(ctx)
	unlock()
	if n.kernel.has("netns:4:4026540200", "eth0") {
		t.Fatal("a cut-off pair without an allocation survived the garbage collection")
	}
	if !n.kernel.has("netns:4:4026540201", "eth0") {
		t.Fatal("a down pair that still has its address was deleted")
	}
	n.checkLockRule(t)
}

// holdDeletes makes every background pair delete wait until the returned
// func is called (or the test ends).
func (k *fakeKernel) holdDeletes(t *testing.T) (open func()) {
	gate := make(chan struct{})
	k.deleteGate = gate
	var once sync.Once
	open = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	return open
}

func detachSpecs(ids ...string) []attach.DetachSpec {
	var out []attach.DetachSpec
	for _, id := range ids {
		out = append(out, attach.DetachSpec{ContainerID: id, IfName: "eth0"})
	}
	return out
}
