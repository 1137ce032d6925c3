package ipam

import (
	"fmt"
	"hash/fnv"
	"sort"
	"time"
)

// undo records this host's own writes to the map until they are persisted;
// a failed save rolls them back, so nothing this host wrote is ever visible
// to a peer before it is on disk.
type undo struct {
	blocks      map[uint32]entry
	hosts       map[ident]*hostRec // nil: the record did not exist
	selfInc     uint32
	removals    []ident
	removedByMe map[ident]bool
	bcast       delta
}

func (a *Allocator) begin() {
	a.tx = &undo{blocks: map[uint32]entry{}, hosts: map[ident]*hostRec{}, selfInc: a.self.Inc,
		removedByMe: map[ident]bool{}, bcast: a.bcast}
	for k, v := range a.removedByMe {
		a.tx.removedByMe[k] = v
	}
}

func (u *undo) noteHost(v *view, id ident) {
	if _, ok := u.hosts[id]; ok {
		return
	}
	u.hosts[id] = nil
	if h, ok := v.hosts[id]; ok {
		c := h.clone()
		u.hosts[id] = &c
	}
}

// writeBlock sets block b to e as this host's own write.
func (a *Allocator) writeBlock(b uint32, e entry) {
	if a.tx != nil {
		if _, ok := a.tx.blocks[b]; !ok {
			a.tx.blocks[b] = a.v.blocks[b]
		}
	}
	a.v.blocks[b] = e
	delete(a.v.unv, b)
	a.ownedOK = false
	a.gen++
	a.bcast.blocks = append(a.bcast.blocks, b)
}

// commit persists the writes since begin, or rolls them back.
// Inside HandleMessages the save is left to the end of the batch.
func (a *Allocator) commit() error {
	u := a.tx
	a.tx = nil
	if u == nil {
		return nil
	}
	if a.batch {
		a.batchTx = append(a.batchTx, u)
		return nil
	}
	err := a.save()
	if err == nil {
		return nil
	}
	a.rollback(u)
	a.log.Error("could not persist IPAM state; change rolled back", "error", err)
	return err
}

// rollback undoes the writes recorded in u. Caller holds a.mu.
func (a *Allocator) rollback(u *undo) {
	for b, e := range u.blocks {
		a.v.blocks[b] = e
	}
	for id, h := range u.hosts {
		if h == nil {
			delete(a.v.hosts, id)
		} else {
			a.v.hosts[id] = *h
		}
	}
	for _, id := range u.removals {
		delete(a.v.removed, id)
	}
	a.removedByMe = u.removedByMe
	a.self.Inc = u.selfInc
	a.bcast = u.bcast
	a.ownedOK = false
	a.gen++
}

// payloadHash identifies a state payload. Merging is idempotent and a
// view only grows, so a payload merged once (under the same seed) is a
// no-op the second time: push-pull repeats a peer's unchanged state often.
func payloadHash(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

func (a *Allocator) remember(h uint64) {
	if len(a.merged) >= 512 {
		a.merged = map[uint64]bool{}
	}
	a.merged[h] = true
}

// viewUsed reports whether any host of this view has handed out an address.
func (a *Allocator) viewUsed() bool {
	if a.used {
		return true
	}
	for _, h := range a.v.hosts {
		if h.Used {
			return true
		}
	}
	return false
}

// mergeState merges a decoded state message. Caller holds a.mu.
func (a *Allocator) mergeState(st *wireState) error {
	if st.fp != a.sp.fp {
		a.noteConflict(st.sender.Name, fmt.Sprintf("peer %s uses another address space or block size (fingerprint %016x, ours %016x)", st.sender.Name, st.fp, a.sp.fp))
		return fmt.Errorf("peer %s uses another address space or block size", st.sender.Name)
	}
	if st.seed == 0 {
		return nil
	}
	if st.seed != a.v.seed {
		adopt, err := a.seedDecision(st)
		if !adopt {
			return err
		}
		if err := a.adopt(st.seed, st.sender.Name); err != nil {
			return err
		}
	}
	delete(a.conflicts, st.sender.Name)
	// One transaction for the whole message: answers to forged changes
	// (own writes) are persisted before anything leaves.
	a.begin()
	var d delta
	d.removals = a.mergeRemovals(st.sender, st.removals) // reclaims below need them
	sortIdents(d.removals)
	gained := false
	st.eachBlock(func(b uint32, e entry, unv bool) {
		wasUnv, before := a.v.unv[b], a.v.blocks[b]
		if p, ok := a.pre[b]; ok && wasUnv {
			before = p.e // the entry a confirmation now follows
		}
		changed, got := a.mergeEntry(st.sender, b, e, unv)
		if changed || wasUnv && !a.v.unv[b] { // new, or confirmed now (followUps)
			d.blocks = append(d.blocks, b)
		}
		if got {
			a.noteGained(b, before)
		}
		gained = gained || got
	})
	d.add(a.mergeHosts(st.sender, st.hosts))
	if d.empty() && !gained {
		if len(a.tx.blocks) > 0 {
			a.ownedOK = false
			if err := a.commit(); err == nil {
				a.notify()
			}
		} else {
			a.tx = nil
		}
		return nil
	}
	a.afterMerge(d, gained)
	return nil
}

// seedDecision applies the bootstrap rule to a state from another map.
func (a *Allocator) seedDecision(st *wireState) (bool, error) {
	if a.v.seed == 0 {
		return true, nil
	}
	local := a.viewUsed()
	if !local && (st.used || st.seed < a.v.seed) {
		return true, nil
	}
	if local && st.used {
		a.noteConflict(st.sender.Name, a.seedConflict(st.seed, st.sender.Name).Error())
		return false, a.seedConflict(st.seed, st.sender.Name)
	}
	return false, nil // they adopt ours
}

func (a *Allocator) seedConflict(remote uint64, name string) error {
	where := "its state dir"
	if a.path != "" {
		where = "the state dir (here " + a.path + ")"
	}
	return fmt.Errorf("%w: %s belongs to IPAM map %016x and this host (%s) to map %016x, and both have handed out addresses; "+
		"to merge them, stop the agents of the smaller cluster, detach their containers, remove %s from %s, and restart them with --join",
		ErrSeedConflict, name, remote, a.self.Name, a.v.seed, StateFile, where)
}

// adopt drops this host's (unused or absent) map for another seed's. The
// switch is saved at once: coming back from a restart with the old map,
// after peers saw this host in the new one, would make two maps out of one
// cluster (and a joined host should not forget the map it found).
func (a *Allocator) adopt(seed uint64, from string) error {
	oldV, oldByMe := a.v, a.removedByMe
	mine, had := a.v.hosts[a.self]
	a.v = newView(seed, a.sp.nBlocks)
	if had {
		mine = mine.clone()
		mine.Use = map[uint32]uint32{}
		a.v.hosts[a.self] = mine
	}
	a.removedByMe = map[ident]bool{}
	oldUntrusted := a.untrusted
	a.untrusted, a.pre = map[uint32]bool{}, map[uint32]preEntry{}
	a.freed = map[uint32]map[uint64]time.Time{}
	a.needs, a.wants = map[allocKey]*needState{}, map[uint32]*wantState{}
	a.fresh, a.asked = map[uint32]bool{}, map[string]time.Time{}
	a.ownedOK, a.dirty = false, true
	a.merged = map[uint64]bool{}
	a.gen++
	if err := a.save(); err != nil {
		a.v, a.removedByMe, a.untrusted, a.ownedOK = oldV, oldByMe, oldUntrusted, false
		return fmt.Errorf("not adopting map %016x: %w", seed, err)
	}
	if oldV.seed != 0 {
		a.log.Info("adopted another host's IPAM map (this one handed out nothing)", "from", from,
			"old_seed", fmt.Sprintf("%016x", oldV.seed), "seed", fmt.Sprintf("%016x", seed))
	}
	return nil
}

// mergeOwnRecord handles a copy of this host's own record from a peer: if
// it is newer (a forged first copy, or this host restarted from older
// state), take a higher version. A copy at the version limit cannot be
// outbid: the merge order then picks which copy every view keeps (this one
// included, or views stay apart) and Check says so.
func (a *Allocator) mergeOwnRecord(h hostRec) {
	cur, ok := a.v.hosts[a.self]
	if ok && (h.Ver < cur.Ver || h.Ver == cur.Ver && hostEqual(h, cur)) {
		return
	}
	if h.Ver > maxVer {
		a.reject("a copy of this host's record with version %d", h.Ver)
		return
	}
	if h.Ver == maxVer {
		a.noteRecordAtLimit()
		if !ok || hostLess(cur, h) {
			a.putSelf(h.clone())
		}
		return
	}
	if !ok {
		cur = hostRec{Use: map[uint32]uint32{}}
	}
	cur = cur.clone()
	cur.Ver = max(h.Ver, cur.Ver)
	a.v.hosts[a.self] = cur
	a.writeSelf(func(*hostRec) {})
}

// afterMerge reacts to merged changes: own identity removed, reclaims this
// host owes as a remover, waking waiters, persisting.
// Caller holds a.mu inside the merge's transaction (a.tx).
func (a *Allocator) afterMerge(d delta, gained bool) {
	a.dirty = true
	a.ownedOK = false
	if len(d.removals) > 0 {
		a.followUps(nil)
	} else {
		a.followUps(d.blocks)
	}
	if d.newHosts > 0 || len(d.removals) > 0 {
		a.prune()
		a.refreshHeirs()
	}
	// This host's own writes must be on disk before anyone sees them;
	// blocks it received are saved too (else a crash before the next save
	// would leave them to a life of this host that has ended); the rest
	// of what was merged from peers is saved lazily.
	if len(a.tx.blocks) > 0 || len(a.tx.removals) > 0 || gained {
		if err := a.commit(); err != nil {
			return
		}
	} else {
		a.tx = nil
	}
	a.notify()
}

// checkSelfRemoved handles a removal record naming this host's identity:
// with no allocations it starts a new incarnation; with allocations it
// stops handing out addresses.
func (a *Allocator) checkSelfRemoved() {
	if !a.v.isRemoved(a.self) || a.removedSelf {
		return
	}
	if len(a.allocs) > 0 {
		a.removedSelf = true
		a.log.Error("this host was removed from the IPAM map by rmpeer while it holds allocations; refusing to allocate",
			"identity", a.self.String(), "allocations", len(a.allocs))
		return
	}
	old := a.self
	a.begin()
	a.self.Inc = max(freshInc(a.now()), a.self.Inc+1)
	a.writeSelf(func(h *hostRec) { h.Heirs = nil })
	a.needs, a.wants, a.ownedOK = map[allocKey]*needState{}, map[uint32]*wantState{}, false
	a.fresh, a.asked = map[uint32]bool{}, map[string]time.Time{}
	if err := a.commit(); err == nil {
		a.log.Info("this host's name was removed by rmpeer before; starting a new incarnation", "old", old.String(), "new", a.self.String())
	}
}

// handleRequest answers a peer's request for space.
func (a *Allocator) handleRequest(q *wireRequest) {
	if q.state == nil || q.fp != a.sp.fp || a.v.seed == 0 || q.seed != a.v.seed {
		return
	}
	if err := a.mergeState(q.state); err != nil {
		return
	}
	from := q.state.sender
	if from.Name == a.self.Name || a.v.isRemoved(from) || a.removedSelf {
		return
	}
	if q.want {
		a.answerWant(from, q.block)
		return
	}
	// A repeated request (the donation was lost): send what it already has,
	// unless the request shows it holds that entry but cannot trust it.
	held := map[uint32]bool{}
	q.state.eachBlock(func(b uint32, e entry, _ bool) { held[b] = held[b] || e.Owner == from })
	if b, ok := a.unusedBlockOf(from, held); ok {
		a.sendState(from.Name, delta{blocks: []uint32{b}})
		return
	}
	// Only blocks the requester's view shows exactly as ours: it trusts a
	// hand-over only from the owner its view names (docs/ipam.md).
	known := map[uint32]bool{}
	q.state.eachBlock(func(b uint32, e entry, _ bool) { known[b] = e == a.v.blocks[b] && e.Owner == a.self })
	b, ok := a.donatable(false, func(b uint32) bool { return known[b] })
	if !ok {
		a.refuse(from.Name, false, 0, fmt.Sprintf("%s has no free block to give", a.self))
		return
	}
	a.donate(b, from)
}

func (a *Allocator) answerWant(from ident, b uint32) {
	e := a.v.blocks[b]
	switch {
	case e.Owner == from:
		a.sendState(from.Name, delta{blocks: []uint32{b}})
	case e.Owner != a.self:
		a.refuse(from.Name, true, b, fmt.Sprintf("%s does not own the block (its owner is %s)", a.self, e.Owner))
		a.sendState(from.Name, delta{blocks: []uint32{b}})
	case a.blockAllocs[b] > 0:
		a.refuse(from.Name, true, b, fmt.Sprintf("%d addresses of the block are in use on %s", a.blockAllocs[b], a.self))
	case a.cooling(b) > 0:
		a.refuse(from.Name, true, b, fmt.Sprintf("addresses of the block were released on %s less than %s ago", a.self, a.cooldown))
	case e.reasserted() || a.untrusted[b]:
		a.refuse(from.Name, true, b, fmt.Sprintf("%s keeps the block: it re-asserted it after a change it did not write", a.self))
	default:
		a.donate(b, from)
	}
}

// unusedBlockOf finds a block this host gave to and that has not been
// used (its donation may have been lost).
func (a *Allocator) unusedBlockOf(to ident, skip map[uint32]bool) (uint32, bool) {
	h := a.v.hosts[to]
	for i, e := range a.v.blocks {
		if e.Owner == to && e.Prev == a.self && h.Use[uint32(i)] == 0 && a.sp.capacity[i] > 0 && !skip[uint32(i)] {
			return uint32(i), true
		}
	}
	return 0, false
}

// donatable picks a block to give away: no allocations, nothing cooling,
// something to allocate in it, not re-asserted (a block handed over from a
// re-assertion is not trusted), and allowed (nil: any). Unless forced, this
// host keeps at least one block with a free address for itself. The highest
// block goes first.
func (a *Allocator) donatable(force bool, allowed func(uint32) bool) (uint32, bool) {
	owned := a.ownedBlocks()
	for i := len(owned) - 1; i >= 0; i-- {
		b := owned[i]
		if a.blockAllocs[b] > 0 || a.cooling(b) > 0 || a.sp.capacity[b] == 0 || a.v.blocks[b].reasserted() {
			continue
		}
		if allowed != nil && !allowed(b) {
			continue
		}
		if force || a.keepsSpace(b) {
			return b, true
		}
	}
	return 0, false
}

// keepsSpace reports whether this host has a free address outside block b.
func (a *Allocator) keepsSpace(skip uint32) bool {
	for _, b := range a.ownedBlocks() {
		if b != skip && int(a.sp.capacity[b])-a.blockAllocs[b]-a.cooling(b) > 0 {
			return true
		}
	}
	return false
}

// donate gives block b to a peer: bump the version, persist, then tell the
// peer directly and everyone by broadcast.
func (a *Allocator) donate(b uint32, to ident) {
	if a.v.blocks[b].Ver >= maxVer {
		a.refuse(to.Name, false, 0, fmt.Sprintf("%s cannot give block %s: its version is at the limit", a.self, a.sp.blockPrefix(b)))
		return
	}
	a.begin()
	a.writeBlock(b, entry{Ver: a.v.blocks[b].Ver + 1, Owner: to, Prev: a.self})
	delete(a.freed, b)
	a.writeSelf(func(h *hostRec) { delete(h.Use, b) })
	if err := a.commit(); err != nil {
		return
	}
	a.log.Debug("gave a block", "block", a.sp.blockPrefix(b), "to", to.String())
	a.sendState(to.Name, delta{blocks: []uint32{b}, hosts: []ident{a.self}})
	a.notify()
}

func (a *Allocator) sendState(to string, d delta) {
	a.out = append(a.out, outMsg{to: to, payload: encodeState(a.v, a.sp.fp, a.self, a.viewUsed(), false, d), want: -1})
}

func (a *Allocator) refuse(to string, want bool, b uint32, reason string) {
	a.out = append(a.out, outMsg{to: to, payload: encodeRefuse(a.v.seed, a.sp.fp, a.self.Name, want, b, reason), want: -1})
}

// sendRequest asks owner for a block (a specific one when want).
func (a *Allocator) sendRequest(owner string, want bool, b uint32) {
	if _, ok := a.v.hosts[a.self]; !ok {
		a.writeSelfQuiet(func(*hostRec) {})
	}
	a.asked[owner] = a.now()
	// The blocks this view says the owner has: it gives one of those, the
	// only hand-over this host can check (docs/ipam.md).
	d := delta{hosts: []ident{a.self}}
	for b := range a.untrusted {
		if a.vouchableBy(owner, b) {
			continue // owner's word confirms it: let it resend (issue 13)
		}
		d.blocks = append(d.blocks, b) // named ours, not usable: not a lost donation
	}
	for i, e := range a.v.blocks {
		if e.Owner.Name == owner && !e.reasserted() && !a.v.unv[uint32(i)] && (!want || uint32(i) == b) {
			d.blocks = append(d.blocks, uint32(i))
		}
	}
	st := encodeState(a.v, a.sp.fp, a.self, a.viewUsed(), false, d)
	m := outMsg{to: owner, payload: encodeRequest(a.v.seed, a.sp.fp, want, b, st), want: -1}
	if want {
		m.want = int64(b)
	}
	a.out = append(a.out, m)
}

func (a *Allocator) handleRefuse(f *wireRefuse) {
	if f.seed != a.v.seed || f.fp != a.sp.fp {
		return
	}
	if f.want {
		if w := a.wants[f.block]; w != nil && w.owner.Name == f.sender {
			w.refused = f.reason
			a.notify()
		}
		return
	}
	hit := false
	for _, n := range a.needs {
		if _, asked := n.asked[f.sender]; asked {
			if _, done := n.refused[f.sender]; !done {
				n.refused[f.sender] = f.reason
				n.lastSent = time.Time{} // ask the next owner at once
				hit = true
			}
		}
	}
	if hit {
		a.notify()
	}
}

// CheckMerge decides whether this host may join a peer of another IPAM
// map (the agent calls it from the cluster's merge check with the peer's
// metadata). Same seed, or either side unseeded: fine. Different seeds:
// fine when this host's whole view has handed out nothing (it adopts the
// other map on the next state it receives) or the peer has handed out
// nothing (it adopts ours); if both have, the merge is refused with an
// error that names both seeds and how to reset one side.
func (a *Allocator) CheckMerge(remoteSeed uint64, remoteUsed bool, remoteName string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if remoteSeed == 0 || a.v.seed == 0 || remoteSeed == a.v.seed {
		return nil
	}
	if !a.viewUsed() || !remoteUsed {
		return nil
	}
	return a.seedConflict(remoteSeed, remoteName)
}

// SeedID identifies the IPAM map this host belongs to (0: none yet). The
// agent puts it in the node metadata (cluster.Meta.IPAMSeed).
func (a *Allocator) SeedID() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.v.seed
}

// Used reports whether this host has ever handed out an address
// (cluster.Meta.IPAMUsed).
func (a *Allocator) Used() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.used
}

// maxConflicts bounds the conflicts remembered for Check.
const maxConflicts = 16

func (a *Allocator) noteConflict(peer, msg string) {
	if _, ok := a.conflicts[peer]; ok || len(a.conflicts) < maxConflicts {
		a.conflicts[peer] = msg
	}
}

// conflictList returns recorded conflicts, sorted.
func (a *Allocator) conflictList() []string {
	var out []string
	for _, c := range a.conflicts {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
