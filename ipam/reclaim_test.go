package ipam

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fourHosts builds a (seed), b, c, d, each with a block in use, heirs set
// (ring successors: b -> c, d, a; c -> d, a, b).
func fourHosts(t *testing.T) (*clock, *bus, map[string]*Allocator) {
	c, b := newClock(), newBus()
	hs := map[string]*Allocator{"a": b.open(t, "a", c, hostOpts{seed: true})}
	for _, n := range []string{"b", "c", "d"} {
		hs[n] = b.open(t, n, c, hostOpts{})
	}
	b.sync(t)
	b.peersChanged()
	b.sync(t)
	for _, n := range []string{"a", "b", "c", "d"} {
		mustAlloc(t, b, hs[n], c, "on-"+n)
	}
	b.sync(t)
	return c, b, hs
}

func (b *bus) kill(names ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range names {
		b.down[n] = true
	}
}

// TestReclaimChainsAgree removes two dead hosts in both orders on two
// hosts: every block ends with the same live heir either way, and blocks
// that first went to a dead heir move on when that heir is removed.
func TestReclaimChainsAgree(t *testing.T) {
	_, b, hs := fourHosts(t)
	bBlocks, cBlocks := hs["a"].OwnedBlocks("b"), hs["a"].OwnedBlocks("c")
	b.kill("b", "c")
	alive := []string{"a", "d"}

	// On a: b first (its blocks go to c, dead but not removed yet), then c.
	if err := hs["a"].RemovePeer("b", alive); err != nil {
		t.Fatal(err)
	}
	if got := hs["a"].OwnedBlocks("c"); len(got) != len(bBlocks)+len(cBlocks) {
		t.Fatalf("after rmpeer b, c owns %v", got)
	}
	// On d, cut off from a: c first, then b.
	b.kill("a")
	b.mu.Lock()
	b.queue = nil
	b.mu.Unlock()
	if err := hs["d"].RemovePeer("c", alive); err != nil {
		t.Fatal(err)
	}
	if err := hs["d"].RemovePeer("b", alive); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.queue, b.down["a"] = nil, false
	b.mu.Unlock()
	if err := hs["a"].RemovePeer("c", alive); err != nil {
		t.Fatal(err)
	}
	b.sync(t)
	if hs["a"].Digest() != hs["d"].Digest() {
		t.Fatal("views differ")
	}
	got := hs["a"].OwnedBlocks("d")
	for _, p := range append(bBlocks, cBlocks...) {
		found := false
		for _, q := range got {
			found = found || p == q
		}
		if !found {
			t.Errorf("block %s did not reach d (the first live heir)", p)
		}
	}
	for _, n := range []string{"a", "d"} {
		if p := hs[n].Check(); len(p) != 0 {
			t.Errorf("%s: %v", n, p)
		}
	}
}

func TestReclaimWithNoLiveHeirLeavesBlocksUnowned(t *testing.T) {
	c, b := newClock(), newBus()
	a := b.open(t, "a", c, hostOpts{seed: true})
	x := b.open(t, "x", c, hostOpts{})
	b.sync(t)
	mustAlloc(t, b, x, c, "on-x")
	b.sync(t)
	// x never named an heir (PeersChanged was never called).
	b.kill("x")
	if err := a.RemovePeer("x", []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if n := len(a.OwnedBlocks("x")); n != 0 {
		t.Fatalf("x still owns %d blocks", n)
	}
	found := false
	for _, p := range a.Check() {
		found = found || p == "1 blocks have no owner (a reclaim found no live heir); that space cannot be handed out"
	}
	if !found {
		t.Fatalf("check: %v", a.Check())
	}
}

// breakSave makes the next save fail: a non-empty directory where the
// state file goes.
func breakSave(t *testing.T, a *Allocator) func() {
	t.Helper()
	if err := os.Remove(a.path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(a.path, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.RemoveAll(a.path); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFailedSaveRollsBackDonationAndReclaim(t *testing.T) {
	c, b, hs := threeHosts(t)
	h1, h2 := hs[0], hs[1]
	h4 := b.open(t, "h4", c, hostOpts{})
	b.sync(t)
	before := h1.Digest()
	repair := breakSave(t, h1)
	// h1 cannot persist the donation h4 asks for: nothing changes on h1
	// and nothing is sent, so h4 keeps waiting.
	_, err := b.alloc(t, h4, c, Request{ID: "x", Want: netip.MustParseAddr("10.213.0.100")})
	if err == nil || !strings.Contains(err.Error(), "still waiting") {
		t.Fatalf("want from h1: %v", err)
	}
	if h1.Digest() != before || len(h1.OwnedBlocks("h4")) != 0 {
		t.Fatal("h1 changed its map without saving it")
	}
	b.kill("h2")
	if err := h1.RemovePeer("h2", []string{"h1", "h3"}); err == nil {
		t.Fatal("rmpeer succeeded without saving")
	}
	if len(h1.OwnedBlocks("h2")) == 0 || h1.v.isRemoved(h2.self) || len(h1.removedByMe) != 0 {
		t.Fatal("rmpeer was not rolled back")
	}
	repair()
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h1.RemovePeer("h2", []string{"h1", "h3"}); err != nil {
		t.Fatal(err)
	}
	if len(h1.BlocksByOwner()["h2"]) != 0 {
		t.Fatal("rmpeer after repair did not reclaim")
	}
}
