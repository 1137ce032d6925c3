package ipam

import (
	"fmt"
	"net/netip"
	"sort"
	"time"
)

// tryAllocate is one allocation step. Caller holds a.mu.
func (a *Allocator) tryAllocate(r Request) (Allocation, error) {
	k := allocKey{r.ID, r.IfName}
	if al, ok := a.allocs[k]; ok {
		if r.Want.IsValid() && a.sp.addrAt(al.off) != r.Want.Unmap() {
			return Allocation{}, fmt.Errorf("container %s interface %q already has %s (wanted %s): release it first",
				r.ID, r.IfName, a.sp.addrAt(al.off), r.Want)
		}
		return a.allocation(al), nil
	}
	if a.removedSelf {
		return Allocation{}, fmt.Errorf("%w (as %s) while it holds %d allocations, which may now be handed out elsewhere: detach those containers; once all are released this host starts a new life",
			ErrRemoved, a.self, len(a.allocs))
	}
	if a.v.seed == 0 {
		return Allocation{}, &waitError{"this host has not received an IPAM map yet (no seeded host reached)"}
	}
	if r.Want.IsValid() {
		return a.tryWant(r)
	}
	if off, ok := a.findFree(); ok {
		delete(a.needs, k)
		al, err := a.commitAlloc(r, off)
		if err == nil {
			a.giveBackSurplus()
		}
		return al, err
	}
	return Allocation{}, a.needSpace(k)
}

func (a *Allocator) tryWant(r Request) (Allocation, error) {
	want := r.Want.Unmap()
	off, ok := a.sp.offsetOf(want)
	if !ok {
		return Allocation{}, fmt.Errorf("address %s is outside the space %s", r.Want, a.sp.cidr)
	}
	b := a.sp.blockOf(off)
	if ex, _ := a.sp.excluded(off); ex {
		return Allocation{}, fmt.Errorf("address %s is excluded (network or broadcast address, or in the exclude list)", want)
	}
	if a.sp.hasGW[b] && a.sp.gw[b] == off {
		return Allocation{}, fmt.Errorf("address %s is the gateway of block %s", want, a.sp.blockPrefix(b))
	}
	if other, ok := a.byOff[off]; ok {
		return Allocation{}, fmt.Errorf("address %s is already allocated to container %s interface %q", want, other.ID, other.IfName)
	}
	e := a.v.blocks[b]
	switch {
	case e.Owner == a.self && a.untrusted[b]:
		return Allocation{}, fmt.Errorf("address %s: block %s is named this host's by gossip it could not verify; it is not used", want, a.sp.blockPrefix(b))
	case e.Owner == a.self:
		// An explicit request may take an address that is cooling down.
		delete(a.wants, b)
		return a.commitAlloc(r, off)
	case e.Owner.Name == "":
		return Allocation{}, fmt.Errorf("address %s: block %s has no owner", want, a.sp.blockPrefix(b))
	case a.v.isRemoved(e.Owner):
		return Allocation{}, fmt.Errorf("address %s: block %s belongs to %s, which was removed; its blocks move to its heirs once a host that ran rmpeer %s reclaims them",
			want, a.sp.blockPrefix(b), e.Owner, e.Owner.Name)
	}
	w := a.wants[b]
	if w != nil && w.owner == e.Owner && w.refused != "" {
		delete(a.wants, b)
		return Allocation{}, fmt.Errorf("address %s is in block %s owned by %s, which did not give it: %s",
			want, a.sp.blockPrefix(b), e.Owner, w.refused)
	}
	now := a.now()
	if w == nil || w.owner != e.Owner || now.Sub(w.sent) >= a.retry {
		a.wants[b] = &wantState{owner: e.Owner, sent: now}
		a.sendRequest(e.Owner.Name, true, b)
	}
	return Allocation{}, &waitError{fmt.Sprintf("asked %s for block %s (holding %s)", e.Owner, a.sp.blockPrefix(b), want)}
}

// commitAlloc records and persists a new allocation.
func (a *Allocator) commitAlloc(r Request, off uint64) (Allocation, error) {
	al := &alloc{ID: r.ID, IfName: r.IfName, Name: r.Name, off: off}
	firstUse := !a.used
	prev, hadFreed := a.freedAt(off)
	a.addAlloc(al)
	delete(a.fresh, a.sp.blockOf(off))
	a.clearFreed(off)
	a.used = true
	a.updateUse(a.sp.blockOf(off))
	if err := a.save(); err != nil {
		a.removeAlloc(al)
		if hadFreed {
			a.setFreed(off, prev)
		}
		a.used = !firstUse
		a.updateUse(a.sp.blockOf(off))
		return Allocation{}, err
	}
	if firstUse {
		// The used flag decides seed conflicts: tell everyone at once.
		a.bcast.hosts = append(a.bcast.hosts, a.self)
	}
	a.notify()
	return a.allocation(al), nil
}

func (a *Allocator) addAlloc(al *alloc) {
	a.allocs[allocKey{al.ID, al.IfName}] = al
	a.byOff[al.off] = al
	a.blockAllocs[a.sp.blockOf(al.off)]++
}

func (a *Allocator) removeAlloc(al *alloc) {
	delete(a.allocs, allocKey{al.ID, al.IfName})
	delete(a.byOff, al.off)
	b := a.sp.blockOf(al.off)
	if a.blockAllocs[b]--; a.blockAllocs[b] <= 0 {
		delete(a.blockAllocs, b)
	}
}

func (a *Allocator) freedAt(off uint64) (time.Time, bool) {
	t, ok := a.freed[a.sp.blockOf(off)][off]
	return t, ok
}

func (a *Allocator) setFreed(off uint64, at time.Time) {
	b := a.sp.blockOf(off)
	if a.freed[b] == nil {
		a.freed[b] = map[uint64]time.Time{}
	}
	a.freed[b][off] = at
}

func (a *Allocator) clearFreed(off uint64) {
	b := a.sp.blockOf(off)
	if m := a.freed[b]; m != nil {
		delete(m, off)
		if len(m) == 0 {
			delete(a.freed, b)
		}
	}
}

// cooling counts addresses of block b released less than Cooldown ago.
func (a *Allocator) cooling(b uint32) int {
	n := 0
	now := a.now()
	for _, at := range a.freed[b] {
		if now.Sub(at) < a.cooldown {
			n++
		}
	}
	return n
}

// ownedBlocks lists the blocks this host owns (cached until the map changes).
func (a *Allocator) ownedBlocks() []uint32 {
	if !a.ownedOK {
		a.owned = a.owned[:0]
		for i, e := range a.v.blocks {
			if e.Owner == a.self && !a.untrusted[uint32(i)] {
				a.owned = append(a.owned, uint32(i))
			}
		}
		a.ownedOK = true
	}
	return a.owned
}

// findFree picks an address in the lowest owned block that has one: a
// never used address first (lowest first), else the address released
// longest ago whose cool-down is over (least recently freed). Packing
// allocations into few blocks keeps the others whole, to give away, and
// bounds the release records to the blocks in use.
func (a *Allocator) findFree() (uint64, bool) {
	now := a.now()
	for _, b := range a.ownedBlocks() {
		capa := int(a.sp.capacity[b])
		if a.blockAllocs[b] >= capa {
			continue
		}
		if a.blockAllocs[b]+len(a.freed[b]) < capa {
			lo := a.sp.blockStart(b)
			hi := lo + a.sp.size - 1
			for off := a.sp.nextUsable(lo, hi, true, b); off <= hi; off = a.sp.nextUsable(off+1, hi, true, b) {
				_, taken := a.byOff[off]
				_, rested := a.freed[b][off]
				if !taken && !rested {
					return off, true
				}
			}
		}
		var best uint64
		var bestAt time.Time
		found := false
		for off, at := range a.freed[b] {
			if now.Sub(at) < a.cooldown {
				continue
			}
			if !found || at.Before(bestAt) || at.Equal(bestAt) && off < best {
				best, bestAt, found = off, at, true
			}
		}
		if found {
			return best, true
		}
	}
	return 0, false
}

// pruneFreed forgets the release records of blocks without allocations
// whose cool-downs are over: the whole block is free again.
func (a *Allocator) pruneFreed() {
	for b := range a.freed {
		if a.blockAllocs[b] == 0 && a.cooling(b) == 0 {
			delete(a.freed, b)
		}
	}
}

// updateUse refreshes this host's record of allocations in block b. The
// record is gossiped by push-pull only (counts are informational), except
// on the first allocation (see commitAlloc).
func (a *Allocator) updateUse(b uint32) {
	n := uint32(a.blockAllocs[b])
	a.writeSelfQuiet(func(h *hostRec) {
		h.Used = a.used
		if n == 0 {
			delete(h.Use, b)
		} else {
			h.Use[b] = n
		}
	})
}

// noteRecordAtLimit reports (Check) that this host's record reached the
// version limit: a peer pushed a copy there, and the record can no longer
// change (its heir list and block use stay as they are).
func (a *Allocator) noteRecordAtLimit() {
	a.noteConflict("record:"+a.self.Name, "this host's IPAM record was pushed to the version limit by a peer (forged): its heir list and block use can no longer change (it keeps its blocks and addresses; docs/ipam.md, Hostile members)")
}

// writeSelf changes this host's own record and broadcasts it.
func (a *Allocator) writeSelf(mut func(*hostRec)) {
	a.writeSelfQuiet(mut)
	a.bcast.hosts = append(a.bcast.hosts, a.self)
}

// writeSelfQuiet changes this host's own record without broadcasting.
func (a *Allocator) writeSelfQuiet(mut func(*hostRec)) {
	h, ok := a.v.hosts[a.self]
	if ok && h.Ver >= maxVer {
		// Nobody accepts a version over the limit: a record written there
		// would leave this life unknown to every newcomer (which then
		// refuses removals of its earlier life, and the reclaims with them).
		a.noteRecordAtLimit()
		return
	}
	if ok {
		h = h.clone()
	} else {
		h = hostRec{Use: map[uint32]uint32{}}
	}
	h.Ver++
	h.Used = a.used
	mut(&h)
	a.putSelf(h)
}

// putSelf stores h as this host's own record (undoable inside a
// transaction) and marks the view changed.
func (a *Allocator) putSelf(h hostRec) {
	if a.tx != nil {
		a.tx.noteHost(a.v, a.self)
	}
	a.v.hosts[a.self] = h
	a.gen++
	a.dirty = true
}

// needSpace asks a peer for a block for request k and says whether to
// wait. When every candidate refused this request, it is ErrNoSpace.
func (a *Allocator) needSpace(k allocKey) error {
	cands := a.candidates()
	n := a.needs[k]
	if n == nil {
		n = &needState{asked: map[string]time.Time{}, refused: map[string]string{}}
		a.needs[k] = n
	}
	var open []candidate
	for _, c := range cands {
		if _, no := n.refused[c.name]; !no {
			open = append(open, c)
		}
	}
	if len(open) == 0 {
		delete(a.needs, k)
		return a.noSpaceMessage(cands, n)
	}
	now := a.now()
	if n.lastSent.IsZero() || now.Sub(n.lastSent) >= a.retry {
		c := pickCandidate(n, open, now, a.retry)
		n.lastSent, n.asked[c.name], n.last = now, now, c.name
		a.sendRequest(c.name, false, 0)
	}
	return &waitError{fmt.Sprintf("no free address here; asked %s for a block", n.last)}
}

func (a *Allocator) noSpaceMessage(cands []candidate, n *needState) error {
	var cool int
	for _, b := range a.ownedBlocks() {
		cool += a.cooling(b)
	}
	msg := fmt.Sprintf("%v in %s on %s", ErrNoSpace, a.sp.cidr, a.self)
	if cool > 0 {
		msg += fmt.Sprintf(" (%d released addresses are cooling down for up to %s)", cool, a.cooldown)
	}
	if len(cands) == 0 {
		msg += ": no reachable host owns blocks to give"
	} else {
		var why []string
		for _, c := range cands {
			why = append(why, fmt.Sprintf("%s: %s", c.name, n.refused[c.name]))
		}
		msg += fmt.Sprintf(": every reachable owner refused (%v)", why)
	}
	return fmt.Errorf("%s: %w", msg, ErrNoSpace)
}

type candidate struct {
	name  string
	score int
}

// candidates lists the live owners (other than this host) to ask for
// space, most believed free blocks first.
func (a *Allocator) candidates() []candidate {
	free := map[string]int{}
	for i, e := range a.v.blocks {
		o := e.Owner
		if o.Name == "" || o == a.self || a.v.isRemoved(o) {
			continue
		}
		if a.alive != nil && !a.alive[o.Name] {
			continue
		}
		if a.v.unv[uint32(i)] || e.reasserted() {
			continue // it could not give us this block (docs/ipam.md)
		}
		if _, ok := free[o.Name]; !ok {
			free[o.Name] = -1 // an owner keeps one block for itself
		}
		if h := a.v.hosts[o]; h.Use[uint32(i)] == 0 {
			free[o.Name]++
		}
	}
	out := make([]candidate, 0, len(free))
	for n, s := range free {
		out = append(out, candidate{n, s})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].score != out[j].score {
			return out[i].score > out[j].score
		}
		return out[i].name < out[j].name
	})
	return out
}

// pickCandidate prefers the owner with the most free blocks among those
// not asked in the last few retries, else the one asked longest ago.
func pickCandidate(n *needState, open []candidate, now time.Time, retry time.Duration) candidate {
	for _, c := range open {
		if at, ok := n.asked[c.name]; !ok || now.Sub(at) >= 4*retry {
			return c
		}
	}
	best := open[0]
	for _, c := range open[1:] {
		if n.asked[c.name].Before(n.asked[best.name]) {
			best = c
		}
	}
	return best
}

// Gateway returns the gateway address of a block (GatewayPerBlock).
func (a *Allocator) Gateway(block netip.Prefix) (netip.Addr, bool) {
	b, ok := a.sp.blockIndex(block)
	if !ok || !a.sp.hasGW[b] {
		return netip.Addr{}, false
	}
	return a.sp.addrAt(a.sp.gw[b]), true
}
