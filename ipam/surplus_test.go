package ipam

import (
	"fmt"
	"testing"
	"time"
)

// Issue 13: in a join storm a host ended up owning two blocks for its one
// container. These tests drive the request path message by message.

// pumpHolding delivers queued messages like pump, except those hold
// matches: they are set aside and returned (in flight).
func (b *bus) pumpHolding(t *testing.T, hold func(busMsg) bool) []busMsg {
	t.Helper()
	var held []busMsg
	for i := 0; i < 10000; i++ {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.mu.Unlock()
			return held
		}
		m := b.queue[0]
		b.queue = b.queue[1:]
		dst := b.nodes[m.to]
		b.mu.Unlock()
		if hold(m) {
			held = append(held, m)
			continue
		}
		dst.HandleMessage(m.from, m.payload)
	}
	t.Fatal("bus did not go quiet")
	return nil
}

// release queues held messages again.
func (b *bus) release(ms []busMsg) {
	b.mu.Lock()
	b.queue = append(b.queue, ms...)
	b.mu.Unlock()
}

// blocksOf counts the blocks every view gives to name (they must agree).
func blocksOf(t *testing.T, name string, as ...*Allocator) int {
	t.Helper()
	n := -1
	for _, a := range as {
		got := len(a.OwnedBlocks(name))
		if n >= 0 && got != n {
			t.Fatalf("views disagree on %s's blocks: %d and %d", name, n, got)
		}
		n = got
	}
	return n
}

func fromTo(from, to string) func(busMsg) bool {
	return func(m busMsg) bool { return m.from == from && m.to == to }
}

// A donation first heard through a third host's push-pull (the donor's own
// messages still in flight: the join storm's slow direct sends) is kept
// unverified; the request repeated meanwhile named it as held but not
// trusted, and the donor gave a second block.
func TestRelayedDonationThenRetryGetsNoSecondBlock(t *testing.T) {
	b, c := newBus(), newClock()
	s := b.open(t, "s", c, hostOpts{seed: true})
	r := b.open(t, "r", c, hostOpts{})
	h := b.open(t, "h", c, hostOpts{})
	b.sync(t)
	req := Request{ID: "c1", IfName: "eth0"}
	if _, _, err := h.attempt(req); err == nil {
		t.Fatal("h allocated without a block")
	}
	inFlight := b.pumpHolding(t, fromTo("s", "h")) // s donates; its messages to h are slow
	if len(inFlight) == 0 {
		t.Fatal("s sent h nothing")
	}
	// r heard s's broadcast; its push-pull with h arrives first.
	if err := h.MergeRemoteState("r", r.LocalState()); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Second) // the retry
	if _, _, err := h.attempt(req); err == nil {
		t.Fatal("h allocated from a block it could not verify")
	}
	inFlight = append(inFlight, b.pumpHolding(t, fromTo("s", "h"))...)
	b.release(inFlight)
	b.pump(t)
	al := mustAlloc(t, b, h, c, "c1")
	b.sync(t)
	if n := blocksOf(t, "h", s, r, h); n != 1 {
		t.Fatalf("h owns %d blocks for its one container (%s)", n, al.Prefix)
	}
	if p := h.Check(); len(p) > 0 {
		t.Fatalf("check: %v", p)
	}
}

// The first owner asked is slow; the retry asks another owner, which gives a
// block; then the first donation arrives. The surplus goes back to its donor.
func TestLateDonationFromSlowOwnerIsGivenBack(t *testing.T) {
	b, c := newBus(), newClock()
	s := b.open(t, "s", c, hostOpts{seed: true})
	o := b.open(t, "o", c, hostOpts{cooldown: -1})
	h := b.open(t, "h", c, hostOpts{})
	b.sync(t)
	// o gets blocks to spare: 30 containers (three blocks), all but one
	// released again.
	for i := 0; i < 30; i++ {
		mustAlloc(t, b, o, c, fmt.Sprintf("o%d", i))
	}
	for i := 1; i < 30; i++ {
		if err := o.Release(fmt.Sprintf("o%d", i), "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	b.sync(t)
	t.Logf("before: s=%d o=%d h=%d", blocksOf(t, "s", s, o, h), blocksOf(t, "o", s, o, h), blocksOf(t, "h", s, o, h))
	req := Request{ID: "c1", IfName: "eth0"}
	var held []busMsg
	for i := 0; i < 8 && blocksOf(t, "h", h) == 0; i++ {
		if _, _, err := h.attempt(req); err == nil {
			break
		}
		held = append(held, b.pumpHolding(t, fromTo("s", "h"))...)
		c.Add(time.Second)
	}
	if len(held) == 0 {
		t.Skip("h did not ask s first")
	}
	al := mustAlloc(t, b, h, c, "c1")
	b.release(held) // s's donation, late
	b.pump(t)
	b.sync(t)
	if n := blocksOf(t, "h", s, o, h); n != 1 {
		t.Fatalf("h owns %d blocks for its one container (%s)", n, al.Prefix)
	}
	for _, a := range []*Allocator{s, o, h} {
		if p := a.Check(); len(p) > 0 {
			t.Fatalf("%s check: %v", a.self.Name, p)
		}
	}
}
