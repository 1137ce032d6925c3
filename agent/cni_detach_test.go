package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/ipam"
)

// cniAddFake attaches CNI container cid of network fmnet as ADD does.
func (n *testNode) cniAddFake(t *testing.T, nw, cid string) ipam.Allocation {
	t.Helper()
	id := api.CNIContainerID(nw, cid)
	if _, err := n.a.attachNetns(context.Background(), ipam.Request{ID: id, IfName: "eth0", Name: cid}, "/run/netns/x"); err != nil {
		t.Fatal(err)
	}
	al, ok := n.a.ipam.Lookup(id, "eth0")
	if !ok {
		t.Fatalf("ADD of %s left no allocation", cid)
	}
	return al
}

// attachWaitsForDelete attaches req in the background, checks that it
// still waits 100 ms later (for a pair being deleted), lets the deletes go
// with openGate and requires the attach to succeed.
func (n *testNode) attachWaitsForDelete(t *testing.T, openGate func(), req ipam.Request, netns string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := n.a.attachNetns(context.Background(), req, netns)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the attach of %s returned while a pair was still being deleted: %v", req.ID, err)
	case <-time.After(100 * time.Millisecond):
	}
	openGate()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the attach of %s still waits after the delete", req.ID)
	}
}

func (n *testNode) cniDelFake(t *testing.T, cid string) api.CNIDel {
	t.Helper()
	out, err := n.a.handleCNIDel(jsonRequest(t, api.CNIRequest{Network: "fmnet", ContainerID: cid, IfName: "eth0"}))
	if err != nil {
		t.Fatalf("DEL %s: %v", cid, err)
	}
	return out.(api.CNIDel)
}

// CNI DEL goes through the detach worker: it answers with the container
// cut off and its address released while the pair is still being deleted;
// a DEL again succeeds and releases nothing; an ADD of the same container
// ID right after waits for the old pair to go and gets a live pair and a
// new address (the old one cools down).
func TestCNIDelThenAddAtOnce(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	old := n.cniAddFake(t, "fmnet", "c1")
	id := old.ID
	openGate := n.kernel.holdDeletes(t)
	del := n.cniDelFake(t, "c1")
	if del.Released == nil || del.Released.IP != old.Prefix.String() {
		t.Fatalf("DEL answered %+v, want %s released", del.Released, old.Prefix)
	}
	if !n.kernel.has(id, "eth0") || n.kernel.hasUp(id, "eth0") || !n.a.isDeleting(id, "eth0") {
		t.Fatal("DEL did not leave the pair cut off and marked for the background delete")
	}
	if _, ok := n.a.ipam.Lookup(id, "eth0"); ok {
		t.Fatal("DEL answered without releasing the address")
	}
	if again := n.cniDelFake(t, "c1"); again.Released != nil {
		t.Fatalf("a second DEL released %+v again", again.Released)
	}
	n.attachWaitsForDelete(t, openGate, ipam.Request{ID: id, IfName: "eth0", Name: "c1"}, "/run/netns/y")
	al, ok := n.a.ipam.Lookup(id, "eth0")
	if !ok || !n.kernel.hasUp(id, "eth0") || n.a.isDeleting(id, "eth0") {
		t.Fatalf("ADD after DEL: allocation %t, pair up %t", ok, n.kernel.hasUp(id, "eth0"))
	}
	if al.Prefix == old.Prefix {
		t.Fatalf("ADD after DEL got the released %s back during its cool-down", old.Prefix)
	}
	n.checkLockRule(t)
}

// DELs of one container fired at once all succeed and release its address
// once; DEL of a container whose namespace is gone releases it; DEL of one
// the agent holds no address for removes a pair left over all the same.
func TestCNIDelReleasesOnce(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	al := n.cniAddFake(t, "fmnet", "c1")
	const count = 8
	var wg sync.WaitGroup
	released := make([]bool, count)
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := n.a.handleCNIDel(jsonRequest(t, api.CNIRequest{Network: "fmnet", ContainerID: "c1", IfName: "eth0"}))
			if err != nil {
				t.Errorf("DEL #%d: %v", i, err)
				return
			}
			released[i] = out.(api.CNIDel).Released != nil
		}()
	}
	wg.Wait()
	k := 0
	for _, r := range released {
		if r {
			k++
		}
	}
	if k != 1 {
		t.Fatalf("%d concurrent DELs answered a release %d times, want once", count, k)
	}
	n.requireDetached(t, al.ID, "eth0")

	gone := n.cniAddFake(t, "fmnet", "c2")
	n.kernel.vanish(gone.ID, "eth0") // the runtime deleted the namespace first
	if out := n.cniDelFake(t, "c2"); out.Released == nil || out.Released.IP != gone.Prefix.String() {
		t.Fatalf("DEL of a gone container answered %+v, want %s released", out.Released, gone.Prefix)
	}
	if len(n.a.ipam.Allocations()) != 0 {
		t.Fatalf("allocations left: %+v", n.a.ipam.Allocations())
	}

	left := n.cniAddFake(t, "fmnet", "c3")
	if err := n.a.ipam.Release(left.ID, "eth0"); err != nil { // a crash between release and delete
		t.Fatal(err)
	}
	if out := n.cniDelFake(t, "c3"); out.Released != nil {
		t.Fatalf("DEL without an allocation released %+v", out.Released)
	}
	n.requireDetached(t, left.ID, "eth0")
	n.checkLockRule(t)
}

// GC releases, through the detach worker, every attachment of its network
// not in the valid list, and removes that network's pairs left without an
// allocation; valid attachments and other networks' stay.
func TestCNIGCThroughTheWorker(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	keep := n.cniAddFake(t, "fmnet", "keep")
	var drop []ipam.Allocation
	for i := range 3 {
		drop = append(drop, n.cniAddFake(t, "fmnet", fmt.Sprintf("drop%d", i)))
	}
	other := n.cniAddFake(t, "othernet", "drop0")
	orphan := n.cniAddFake(t, "fmnet", "orphan")
	if err := n.a.ipam.Release(orphan.ID, "eth0"); err != nil {
		t.Fatal(err)
	}
	out, err := n.a.handleCNIGC(jsonRequest(t, api.CNIGCRequest{Network: "fmnet",
		Valid: []api.CNIAttachmentRef{{ContainerID: "keep", IfName: "eth0"}}}))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range out.(api.CNIGC).Released {
		got[r.IP] = true
	}
	if len(got) != len(drop) {
		t.Fatalf("GC released %+v, want the %d unlisted", out, len(drop))
	}
	for _, al := range drop {
		if !got[al.Prefix.String()] {
			t.Errorf("GC did not release %s", al.Prefix)
		}
		n.requireDetached(t, al.ID, "eth0")
	}
	n.requireDetached(t, orphan.ID, "eth0")
	for _, al := range []ipam.Allocation{keep, other} {
		if _, ok := n.a.ipam.Lookup(al.ID, "eth0"); !ok || !n.kernel.hasUp(al.ID, "eth0") {
			t.Errorf("GC touched %s", al.ID)
		}
	}
	again, err := n.a.handleCNIGC(jsonRequest(t, api.CNIGCRequest{Network: "fmnet",
		Valid: []api.CNIAttachmentRef{{ContainerID: "keep", IfName: "eth0"}}}))
	if err != nil || len(again.(api.CNIGC).Released) != 0 {
		t.Fatalf("a second GC: %+v %v", again, err)
	}
	n.checkLockRule(t)
}

// A namespace detached as one container and attached at once as another
// (CNI DEL, then ADD with another container ID into the same namespace):
// the new attach finds the interface name still held by the pair being
// deleted, waits for the delete and succeeds.
func TestAttachAnotherIDIntoANamespaceBeingLeft(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	n.kernel.ends = map[string]string{}
	ctx := context.Background()
	id1, id2 := api.CNIContainerID("fmnet", "c1"), api.CNIContainerID("fmnet", "c2")
	if _, err := n.a.attachNetns(ctx, ipam.Request{ID: id1, IfName: "eth0"}, "/run/netns/p"); err != nil {
		t.Fatal(err)
	}
	openGate := n.kernel.holdDeletes(t)
	n.cniDelFake(t, "c1")
	n.attachWaitsForDelete(t, openGate, ipam.Request{ID: id2, IfName: "eth0"}, "/run/netns/p")
	if !n.kernel.hasUp(id2, "eth0") || n.kernel.has(id1, "eth0") {
		t.Fatal("the namespace does not hold the new attachment alone")
	}
	// Taken by a live attachment, the name is refused at once.
	if _, err := n.a.attachNetns(ctx, ipam.Request{ID: id1, IfName: "eth0"}, "/run/netns/p"); !errors.Is(err, attach.ErrIfNameTaken) {
		t.Fatalf("attach into a name held by a live attachment: %v", err)
	}
	if _, ok := n.a.ipam.Lookup(id1, "eth0"); ok {
		t.Fatal("the refused attach kept its address")
	}
	n.checkLockRule(t)
}

// GC answers once the pairs it removed are gone, not only cut off (DEL's
// fast answer): the caller of GC sees the attachments removed. e2e
// TestRootCNI/gc_and_status once found the pair still there.
func TestCNIGCAnswersAfterThePairsAreGone(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	drop := n.cniAddFake(t, "fmnet", "drop")
	open := n.kernel.holdDeletes(t)
	done := make(chan error, 1)
	go func() {
		_, err := n.a.handleCNIGC(jsonRequest(t, api.CNIGCRequest{Network: "fmnet"}))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("GC answered while the pair was still being deleted: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	open()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GC still waits after the delete")
	}
	n.requireDetached(t, drop.ID, "eth0")
	n.checkLockRule(t)
}
