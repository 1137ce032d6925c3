package ipam

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestJoinAndDonation(t *testing.T) {
	c, b := newClock(), newBus()
	h1 := b.open(t, "h1", c, hostOpts{seed: true})
	h2 := b.open(t, "h2", c, hostOpts{})
	if h2.SeedID() != 0 {
		t.Fatal("a host without Seed seeded")
	}
	b.sync(t)
	if h2.SeedID() != h1.SeedID() || h2.Digest() != h1.Digest() {
		t.Fatal("h2 did not adopt h1's map")
	}
	al := mustAlloc(t, b, h2, c, "c1")
	blk := netip.PrefixFrom(al.Prefix.Addr(), 28).Masked()
	if got := h1.OwnedBlocks("h2"); len(got) != 1 || got[0] != blk {
		t.Fatalf("h1 sees h2 owning %v, want [%s]", got, blk)
	}
	if gw, ok := h2.Gateway(blk); !ok || gw != al.Gateway {
		t.Fatalf("gateway %s %v vs %s", gw, ok, al.Gateway)
	}
	// The donor gave its highest block and keeps the rest.
	if blk.String() != "10.213.0.240/28" {
		t.Errorf("donated %s", blk)
	}
	b.sync(t)
	if h1.Digest() != h2.Digest() {
		t.Fatal("views differ after sync")
	}
	for _, h := range []*Allocator{h1, h2} {
		if p := h.Check(); len(p) != 0 {
			t.Fatalf("%s: %v", h.self.Name, p)
		}
	}
	// Used counts travel by push-pull.
	for _, bi := range h1.Blocks() {
		if bi.Prefix == blk && (bi.Owner != "h2" || bi.Used != 1 || bi.Exact) {
			t.Fatalf("h1's info on h2's block: %+v", bi)
		}
	}
}

func TestAllocateWaitsWithoutTheLock(t *testing.T) {
	c, b := newClock(), newBus()
	b.open(t, "h1", c, hostOpts{seed: true})
	h2 := b.open(t, "h2", c, hostOpts{})
	b.sync(t)
	h2.retry = 5 * time.Millisecond
	done := make(chan error, 1)
	go func() {
		_, err := h2.Allocate(bg, Request{ID: "x"})
		done <- err
	}()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return
		case <-deadline:
			t.Fatal("allocation never finished")
		default:
		}
		_ = h2.Allocations() // would deadlock if Allocate held the lock
		b.pump(t)
		time.Sleep(time.Millisecond)
	}
}

func TestWantInAPeersBlock(t *testing.T) {
	c, b := newClock(), newBus()
	h1 := b.open(t, "h1", c, hostOpts{seed: true})
	h2 := b.open(t, "h2", c, hostOpts{})
	b.sync(t)
	used := mustAlloc(t, b, h1, c, "on-h1") // 10.213.0.2 in block .0/28
	w := netip.MustParseAddr("10.213.0.70")
	al, err := b.alloc(t, h2, c, Request{ID: "w", Want: w})
	if err != nil || al.Prefix.Addr() != w {
		t.Fatalf("want in h1's unused block: %+v %v", al, err)
	}
	_, err = b.alloc(t, h2, c, Request{ID: "w2", Want: used.Prefix.Addr().Next()})
	if err == nil || !strings.Contains(err.Error(), "owned by h1") || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("want in h1's used block: %v", err)
	}
	b.mu.Lock()
	b.down["h1"] = true
	b.mu.Unlock()
	_, err = b.alloc(t, h2, c, Request{ID: "w3", Want: netip.MustParseAddr("10.213.0.100")})
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("want from an unreachable owner: %v", err)
	}
}

func TestRefusalMovesToTheNextOwner(t *testing.T) {
	c, b := newClock(), newBus()
	cfg := Config{CIDR: netip.MustParsePrefix("10.213.0.0/26"), BlockBits: 28}
	h1 := b.open(t, "h1", c, hostOpts{seed: true, cfg: &cfg})
	h2 := b.open(t, "h2", c, hostOpts{cfg: &cfg})
	h3 := b.open(t, "h3", c, hostOpts{cfg: &cfg})
	b.sync(t)
	mustAlloc(t, b, h2, c, "a") // h1 gives one of its 4 blocks
	mustAlloc(t, b, h3, c, "b")
	mustAlloc(t, b, h1, c, "c")
	// h1 keeps one free block; h4 must get space from h1's last spare.
	h4 := b.open(t, "h4", c, hostOpts{cfg: &cfg})
	b.sync(t)
	mustAlloc(t, b, h4, c, "d")
	// Nobody has a spare block now: a clear error, not an endless wait.
	h5 := b.open(t, "h5", c, hostOpts{cfg: &cfg})
	b.sync(t)
	_, err := b.alloc(t, h5, c, Request{ID: "e"})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("got %v", err)
	}
}

func TestSeedMerging(t *testing.T) {
	c, b := newClock(), newBus()
	h1 := b.open(t, "h1", c, hostOpts{seed: true})
	h2 := b.open(t, "h2", c, hostOpts{seed: true})
	if h1.SeedID() == h2.SeedID() {
		t.Fatal("same seeds")
	}
	small := min(h1.SeedID(), h2.SeedID())
	if err := h1.CheckMerge(h2.SeedID(), false, "h2"); err != nil {
		t.Fatal(err)
	}
	b.sync(t)
	if h1.SeedID() != small || h2.SeedID() != small || h1.Digest() != h2.Digest() {
		t.Fatal("two unused maps did not converge on the smaller seed")
	}

	// An unused map adopts a used one even with a smaller seed.
	c2, b2 := newClock(), newBus()
	u := b2.open(t, "u", c2, hostOpts{seed: true})
	v := b2.open(t, "v", c2, hostOpts{seed: true})
	used, unused := u, v
	if u.SeedID() < v.SeedID() {
		used, unused = v, u
	}
	mustAlloc(t, b2, used, c2, "x")
	b2.sync(t)
	if unused.SeedID() != used.SeedID() {
		t.Fatal("the unused map was not dropped")
	}
	if _, err := b2.alloc(t, unused, c2, Request{ID: "y"}); err != nil {
		t.Fatal(err)
	}

	// Both used: refused, with both seeds and the fix in the message.
	c3, b3 := newClock(), newBus()
	p := b3.open(t, "p", c3, hostOpts{seed: true})
	q := b3.open(t, "q", c3, hostOpts{seed: true})
	mustAlloc(t, b3, p, c3, "x")
	mustAlloc(t, b3, q, c3, "x")
	err := p.CheckMerge(q.SeedID(), true, "q")
	if !errors.Is(err, ErrSeedConflict) || !strings.Contains(err.Error(), "--join") {
		t.Fatalf("CheckMerge: %v", err)
	}
	if err := p.MergeRemoteState("q", q.LocalState()); !errors.Is(err, ErrSeedConflict) {
		t.Fatalf("merge: %v", err)
	}
	if p.SeedID() == q.SeedID() {
		t.Fatal("a used map was replaced")
	}
	if len(p.Check()) == 0 {
		t.Fatal("the conflict is not reported by Check")
	}
}

// threeHosts builds h1 (seed), h2, h3 with a block each and heirs set.
func threeHosts(t *testing.T) (*clock, *bus, []*Allocator) {
	c, b := newClock(), newBus()
	hs := []*Allocator{b.open(t, "h1", c, hostOpts{seed: true}), b.open(t, "h2", c, hostOpts{}), b.open(t, "h3", c, hostOpts{})}
	b.sync(t)
	b.peersChanged()
	b.sync(t)
	for i, h := range hs {
		mustAlloc(t, b, h, c, "c"+h.self.Name)
		_ = i
	}
	b.sync(t)
	return c, b, hs
}

func TestRemovePeer(t *testing.T) {
	_, b, hs := threeHosts(t)
	h1, h3 := hs[0], hs[2]
	h2blocks := h1.OwnedBlocks("h2")
	if len(h2blocks) == 0 {
		t.Fatal("h2 owns nothing")
	}
	if err := h1.RemovePeer("h2", []string{"h1", "h2", "h3"}); err == nil || !strings.Contains(err.Error(), "alive") {
		t.Fatalf("removing a live peer: %v", err)
	}
	if err := h1.RemovePeer("h1", nil); err == nil {
		t.Fatal("removing self")
	}
	if err := h1.RemovePeer("nobody", nil); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("unknown: %v", err)
	}
	b.mu.Lock()
	b.down["h2"] = true
	b.mu.Unlock()
	// Partition h1 | h3 and run rmpeer on both sides at once.
	b.mu.Lock()
	b.down["h3"] = true
	b.mu.Unlock()
	if err := h1.RemovePeer("h2", []string{"h1"}); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.queue = nil
	b.down["h3"], b.down["h1"] = false, true
	b.mu.Unlock()
	if err := h3.RemovePeer("h2", []string{"h3"}); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.queue = nil
	b.down["h1"] = false
	b.mu.Unlock()
	if err := h1.RemovePeer("h2", []string{"h1", "h3"}); err != nil {
		t.Fatalf("rmpeer again (idempotent): %v", err)
	}
	b.sync(t)
	if h1.Digest() != h3.Digest() {
		t.Fatal("views differ after concurrent rmpeer")
	}
	// h2's heir is its successor h3.
	got := h1.OwnedBlocks("h3")
	for _, p := range h2blocks {
		found := false
		for _, q := range got {
			found = found || p == q
		}
		if !found {
			t.Fatalf("block %s of h2 did not go to h3 (h3 owns %v)", p, got)
		}
	}
	for _, h := range []*Allocator{h1, h3} {
		if p := h.Check(); len(p) != 0 {
			t.Fatalf("%s: %v", h.self.Name, p)
		}
	}
}

func TestRemovedNameComesBackAsANewLife(t *testing.T) {
	c, b, hs := threeHosts(t)
	h1 := hs[0]
	b.mu.Lock()
	b.down["h2"] = true
	b.mu.Unlock()
	if err := h1.RemovePeer("h2", []string{"h1", "h3"}); err != nil {
		t.Fatal(err)
	}
	b.sync(t)
	c.Add(time.Hour)
	fresh := b.open(t, "h2", c, hostOpts{}) // new state dir
	b.sync(t)
	if fresh.self.Inc == hs[1].self.Inc {
		t.Fatal("a fresh start reused the old incarnation")
	}
	mustAlloc(t, b, fresh, c, "new")
	b.sync(t)
	for _, h := range []*Allocator{h1, fresh} {
		if p := h.Check(); len(p) != 0 {
			t.Fatalf("%s: %v", h.self, p)
		}
	}
}

// rmpeer of a host that is alive (an operator error, or a hostile member
// doing it): the host is not silenced. Its peers refuse the removal of a
// live member, it refuses its own removal (Check tells the operator), and
// it re-asserts the blocks the reclaim took; the remover then leaves them.
func TestRemovalOfALiveHostDoesNotSilenceIt(t *testing.T) {
	c, b, hs := threeHosts(t)
	h1, h2, h3 := hs[0], hs[1], hs[2]
	if err := h1.RemovePeer("h2", []string{"h1", "h3"}); err != nil {
		t.Fatal(err)
	}
	b.sync(t)
	b.sync(t)
	mustAlloc(t, b, h2, c, "more")
	if h3.v.isRemoved(h2.self) {
		t.Error("h3 accepted the removal of live h2")
	}
	if p := strings.Join(h2.Check(), " "); !strings.Contains(p, "says this host (h2") {
		t.Errorf("h2's check does not mention the claimed removal: %q", p)
	}
	for _, h := range hs {
		if got := len(h.OwnedBlocks("h2")); got == 0 {
			t.Errorf("%s sees no block of h2 after h2 re-asserted them", h.self)
		}
	}
	if h1.Digest() != h2.Digest() || h2.Digest() != h3.Digest() {
		t.Error("views differ")
	}
}

func TestLeaveHandsBlocksOver(t *testing.T) {
	_, b, hs := threeHosts(t)
	h1, h2 := hs[0], hs[1]
	if err := h2.Release("ch2", "eth0"); err != nil {
		t.Fatal(err)
	}
	n, err := h2.Leave([]string{"h1", "h3"})
	if err != nil || n != 0 {
		t.Fatalf("leave during cool-down: %d %v (the block rests first)", n, err)
	}
	h2.cooldown = -1
	n, err = h2.Leave([]string{"h1", "h3"})
	if err != nil || n == 0 {
		t.Fatalf("leave: %d %v", n, err)
	}
	b.pump(t)
	if got := h1.OwnedBlocks("h2"); len(got) != 0 {
		t.Fatalf("h2 still owns %v", got)
	}
}

func TestAllocateGivesUpWithContext(t *testing.T) {
	c, b := newClock(), newBus()
	b.open(t, "h1", c, hostOpts{seed: true})
	h2 := b.open(t, "h2", c, hostOpts{})
	b.sync(t)
	b.mu.Lock()
	b.down["h1"] = true
	b.mu.Unlock()
	h2.retry = time.Millisecond
	ctx, cancel := context.WithTimeout(bg, 30*time.Millisecond)
	defer cancel()
	_, err := h2.Allocate(ctx, Request{ID: "x"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "h1") {
		t.Fatalf("got %v", err)
	}
}

// A host removed by rmpeer comes back with a fresh state and asks for
// nothing; a host that joins after that must still follow the reclaim of
// the old life's blocks, which it can only once it knows the new life (the
// removal of what looks like a live member's current life is refused).
func TestNewcomerFollowsReclaimOfARemovedLife(t *testing.T) {
	c, b, hs := threeHosts(t)
	h1 := hs[0]
	b.kill("h2")
	b.peersChanged()
	if err := h1.RemovePeer("h2", []string{"h1", "h3"}); err != nil {
		t.Fatal(err)
	}
	b.sync(t)
	c.Add(time.Hour)
	b.open(t, "h2", c, hostOpts{}) // fresh state dir, allocates nothing
	b.sync(t)
	b.peersChanged()
	b.sync(t)
	h4 := b.open(t, "h4", c, hostOpts{})
	b.peersChanged()
	for range 3 {
		b.sync(t)
	}
	if h4.Digest() != h1.Digest() {
		t.Fatalf("the newcomer's view differs: h1 %s, h4 %s", h1.Digest(), h4.Digest())
	}
	if p := h4.Check(); len(p) != 0 {
		t.Fatalf("h4: %v", p)
	}
}
