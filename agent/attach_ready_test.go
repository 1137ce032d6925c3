package agent

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/ipam"
)

// With the reconcile loop running, attach answers only after a pass has
// seen the container's block in use (that pass puts the block's gateway on
// the bridge), so the container's first packet has a gateway.
func TestAttachAnswersAfterAPassSawItsBlock(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	close(n.a.joined) // no join at start in this test
	ctx := runLoop(t, n)

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

// Right after start the first pass waits for the join; an attach then
// must not plug the container in before that pass has built the bridge
// (the kernel step found no bridge: seen in the bench's labs).
func TestAttachPlugsInOnlyAfterTheFirstPass(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	ctx := runLoop(t, n)

	type answer struct{ err error }
	done := make(chan answer, 1)
	go func() {
		_, err := n.a.attachContainer(ctx, ipam.Request{ID: "/run/netns/c1", IfName: "eth0", Name: "c1"})
		done <- answer{err}
	}()
	time.Sleep(300 * time.Millisecond) // the first pass still waits for the join
	n.kernel.mu.Lock()
	early := len(n.kernel.specs)
	n.kernel.mu.Unlock()
	if early != 0 {
		t.Fatalf("the container was plugged in before the first reconcile pass (%d kernel attaches)", early)
	}
	close(n.a.joined)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
	case <-time.After(firstPassWait + readyPassWait + time.Second):
		t.Fatal("attach did not answer after the first pass")
	}
	n.plane.mu.Lock()
	passes := len(n.plane.views)
	n.plane.mu.Unlock()
	if passes == 0 {
		t.Fatal("attach answered without any reconcile pass")
	}
	n.checkLockRule(t)
}

// A block's gateway counts as in place only when the last pass succeeded
// with the block in use and no pass is under way whose snapshot lacks the
// block (that pass would take the gateway away).
func TestGatewayInPlace(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	a := n.a
	blk, other := netip.MustParsePrefix("10.213.0.0/26"), netip.MustParsePrefix("10.213.0.64/26")
	if a.gatewayInPlace(blk) {
		t.Fatal("in place before any pass")
	}
	a.passDone(a.passTaken(), []netip.Prefix{blk})
	if !a.gatewayInPlace(blk) || a.gatewayInPlace(other) {
		t.Fatalf("after a pass with %s in use: %v %v", blk, a.gatewayInPlace(blk), a.gatewayInPlace(other))
	}
	seq := a.passTaken()
	if a.gatewayInPlace(blk) {
		t.Fatal("in place while a pass is under way whose snapshot is not taken yet")
	}
	a.passSnapshot(seq, []netip.Prefix{other})
	if a.gatewayInPlace(blk) {
		t.Fatal("in place while the pass under way has the block not in use (it takes the gateway away)")
	}
	a.passDone(seq, []netip.Prefix{blk})
	seq = a.passTaken()
	a.passSnapshot(seq, []netip.Prefix{blk, other})
	if !a.gatewayInPlace(blk) {
		t.Fatal("not in place while the pass under way keeps the block in use")
	}
	a.passSnapshot(seq-1, nil) // a stale snapshot report changes nothing
	if !a.gatewayInPlace(blk) {
		t.Fatal("a stale snapshot report counted")
	}
	a.passDone(seq, nil) // failed
	if a.gatewayInPlace(blk) {
		t.Fatal("in place after a failed pass")
	}
}

// runLoop runs n's reconcile loop until the test ends (marked running
// first, as Run does before it serves requests) and returns its context.
func runLoop(t *testing.T, n *testNode) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	n.a.loopRunning.Store(true)
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); n.a.reconcileLoop(ctx) }()
	t.Cleanup(func() { cancel(); <-loopDone })
	return ctx
}

// A live peer whose gossiped view of the blocks differs from ours for good:
// readiness gives up after readyPeersWait (an attach never fails for it)
// and counts it, so an operator sees attaches that answered before the
// peers could route the container.
func TestReadinessGivesUpOnADivergingPeerAndCountsIt(t *testing.T) {
	n1 := newTestNode(t, "h1", 1, true, overlayCaps)
	n2 := newTestNode(t, "h2", 2, false, overlayCaps)
	n1.a.metrics = newMetrics(fakeSource())
	n1.a.clRef.Store(n1.a.cl)
	n1.a.loopRunning.Store(true)
	if _, err := n2.a.cl.Join([]string{n1.addr()}); err != nil {
		t.Fatal(err)
	}
	// A digest no view has (h1's own may still change while h2's state
	// merges, so it is not derived from it).
	const apart = 0x5eed_0bad_5eed_0bad
	if err := n2.a.cl.UpdateMeta(func(m *cluster.Meta) { m.IPAMDigest = apart }); err != nil {
		t.Fatal(err)
	}
	waitWithin(t, 10*time.Second, "h1 sees h2's digest", func() bool {
		for _, p := range n1.a.cl.AlivePeers() {
			if p.Name == "h2" && p.Meta.IPAMDigest == apart {
				return true
			}
		}
		return false
	})
	start := time.Now()
	n1.a.awaitPeersAgree(context.Background())
	if d := time.Since(start); d < readyPeersWait || d > readyPeersWait+time.Second {
		t.Errorf("readiness waited %s, want its bound %s", d, readyPeersWait)
	}
	if text := scrape(t, n1.a.metrics); !strings.Contains(text, `flatmesh_attach_ready_timeouts_total{wait="peers"} 1`+"\n") {
		t.Errorf("the timeout was not counted:\n%s", text)
	}
}
