package ipam

import (
	"net/netip"
)

// Issue 13: a host owns the blocks it allocates from plus, when those are
// full, one whole block for the next container; a block handed to it beyond
// that, which it never allocated from, goes back to its giver. After a heal
// (views agree) no running host that waits for nothing may keep such a block
// from a giver that is running, unless the hand-over was written before its
// agent last started (which blocks are fresh, and whom it asked, is not
// persisted: surplus.go), or it is a block this host gave away that came
// back (a return is kept). "Written before" is: some running view, its own
// included, had the block as this host's when it started (a donation to
// the life before a restart may arrive after it: seed 308 of 500 x 2000).

func (s *sim) noteStart(h *simHost) {
	h.ownedAtStart = map[uint32]bool{}
	if h.usedBlocks == nil {
		h.usedBlocks = map[uint32]bool{}
	}
	self := h.a.self
	for _, o := range s.up() {
		o.a.mu.Lock()
		for i, e := range o.a.v.blocks {
			if e.Owner == self {
				h.ownedAtStart[uint32(i)] = true
			}
		}
		o.a.mu.Unlock()
	}
}

// trackOwned notes, for every running host, the blocks it gave away (owned
// at the last step, not now).
func (s *sim) trackOwned() {
	for _, h := range s.up() {
		if h.gaveAway == nil {
			h.gaveAway = map[uint32]bool{}
		}
		now := map[uint32]bool{}
		h.a.mu.Lock()
		for _, b := range h.a.ownedBlocks() {
			now[b] = true
		}
		h.a.mu.Unlock()
		for b := range h.ownedNow {
			if !now[b] {
				h.gaveAway[b] = true
			}
		}
		h.ownedNow = now
	}
}

func (s *sim) noteUse(h *simHost, addr netip.Addr) {
	off, ok := h.a.sp.offsetOf(addr)
	if ok {
		h.usedBlocks[h.a.sp.blockOf(off)] = true
	}
}

// checkSurplus fails for a surplus hand-over kept after a heal.
func (s *sim) checkSurplus() {
	running := map[string]bool{}
	for _, h := range s.up() {
		running[h.name] = true
	}
	for _, h := range s.up() {
		a := h.a
		a.mu.Lock()
		if len(a.needs) > 0 || len(a.wants) > 0 || a.removedSelf {
			a.mu.Unlock()
			continue
		}
		for _, b := range a.ownedBlocks() {
			e := a.v.blocks[b]
			if h.usedBlocks[b] || h.ownedAtStart[b] || h.gaveAway[b] || a.blockAllocs[b] > 0 || !running[e.Prev.Name] ||
				!a.canReturnTo(e.Prev) || !a.keepsSpace(b) {
				continue
			}
			if a.fresh[b] {
				s.stats["surplus kept (cooling)"]++
				continue
			}
			s.stats["surplus kept"]++
			a.mu.Unlock()
			s.fatalf("%s keeps block %d %s from %s: it has %d allocations, never used the block and has space elsewhere",
				h.name, b, a.sp.blockPrefix(b), e.Prev, len(h.cont))
			return
		}
		a.mu.Unlock()
	}
}
