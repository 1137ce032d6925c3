package ipam

import (
	"slices"
	"sort"
	"time"
)

// Surplus blocks (issue 13). A host asks one owner at a time and re-asks
// every Retry, the next owner when the last one is slow; so two owners may
// each give it a block for one need, or a donation may arrive after the
// need was met (Allocate gave up, or another owner answered first). A host
// keeps the blocks it allocates from plus, when those are full, one whole
// block for the next container (the same rule donatable applies to donors:
// keepsSpace). A block received by hand-over beyond that, never allocated
// from, goes back to the host that gave it, once no request of this host is
// waiting. Blocks from the seed or from a reclaim are never given back this
// way (they have no giver to return to); a restart forgets which blocks are
// fresh (such a surplus stays, and is given to the next host that asks).

// vouchableBy reports whether untrusted block b is a hand-over written by
// owner that owner's own copy would confirm here (its donation first heard
// through a relay, its own message still in flight). A request to owner then
// leaves b out of the blocks it names as held but untrusted, so the owner
// resends it instead of giving another block. Caller holds a.mu.
func (a *Allocator) vouchableBy(owner string, b uint32) bool {
	e := a.v.blocks[b]
	p, ok := a.pre[b]
	return ok && e.Owner == a.self && e.Prev.Name == owner && a.confirms(e.Prev, p.e, p.conf, e)
}

// askedWindow is how long after asking an owner a hand-over from it counts
// as an answer: repeated requests still in flight may make it give a second
// block well after the first one arrived.
const askedWindow = time.Minute

// noteGained records block b, gained by a merge over the entry before:
// a hand-over from an owner this host asked within askedWindow is fresh,
// unless it returns a block this host gave to that owner (a give-back is
// never given back again: no ping-pong). A block from a host it did not
// ask (a Leave) is not fresh. Caller holds a.mu.
func (a *Allocator) noteGained(b uint32, before entry) {
	giver := a.v.blocks[b].Prev
	if before.Prev == a.self && before.Owner == giver {
		return
	}
	if at, ok := a.asked[giver.Name]; ok && a.now().Sub(at) < askedWindow {
		a.fresh[b] = true
	}
}

// giveBackSurplus returns fresh blocks this host does not need to their
// givers. Caller holds a.mu (inside a batch or not: donate commits).
func (a *Allocator) giveBackSurplus() {
	if len(a.fresh) == 0 || len(a.needs) > 0 || len(a.wants) > 0 || a.removedSelf || a.v.seed == 0 {
		return
	}
	bs := make([]uint32, 0, len(a.fresh))
	for b := range a.fresh {
		bs = append(bs, b)
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i] > bs[j] }) // the highest first, like donatable
	for _, b := range bs {
		e := a.v.blocks[b]
		if e.Owner != a.self || a.untrusted[b] || a.blockAllocs[b] > 0 {
			delete(a.fresh, b) // no longer ours, or in use: not fresh
			continue
		}
		if a.cooling(b) > 0 || !a.keepsSpace(b) || !a.canReturnTo(e.Prev) {
			continue // the spare, or nobody to give it to now
		}
		delete(a.fresh, b)
		if !slices.Contains(a.ownedBlocks(), b) {
			continue
		}
		a.log.Info("giving back a block this host does not need", "block", a.sp.blockPrefix(b), "to", e.Prev.String())
		a.donate(b, e.Prev)
	}
}

// canReturnTo: the giver is the current life of a live member, not removed.
func (a *Allocator) canReturnTo(giver ident) bool {
	if giver.zero() || giver.Name == a.self.Name || a.v.isRemoved(giver) {
		return false
	}
	if live, known := a.memberState(giver.Name); known && !live {
		return false
	}
	cur, ok := a.v.current(giver.Name)
	return ok && cur == giver
}
