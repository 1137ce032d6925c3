package agent

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/ipam"
)

// With the reconcile loop running, attach answers only after a pass has
// seen the container's block in use (that pass puts the block's gateway on
// the bridge), so the container's first packet has a gateway.
func TestAttachAnswersAfterAPassSawItsBlock(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	close(n.a.joined) // no join at start in this test
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); n.a.reconcileLoop(ctx) }()
	defer func() { cancel(); <-loopDone }()

	al, err := n.a.attachContainer(ctx, ipam.Request{ID: "/run/netns/c1", IfName: "eth0", Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	n.plane.mu.Lock()
	views := slices.Clone(n.plane.views)
	n.plane.mu.Unlock()
	blk := mustPrefix(t, al.IP).Masked()
	seen := false
	for _, v := range views {
		if slices.Contains(v.InUse, blk) {
			seen = true
		}
	}
	if !seen {
		t.Fatalf("attach answered before any pass saw block %s in use (%d passes)", blk, len(views))
	}
	n.checkLockRule(t)
}

// Without a reconcile loop (or in flat mode) there is nothing to wait for:
// attach answers at once.
func TestAttachDoesNotWaitWithoutALoop(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	start := time.Now()
	if _, err := n.a.attachContainer(context.Background(), ipam.Request{ID: "/run/netns/c1", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > readyPassWait {
		t.Errorf("attach took %s without a loop", d)
	}
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
