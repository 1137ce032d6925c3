package ipam

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
)

// RemovePeer is rmpeer: it reclaims the blocks of a dead host for that
// host's heirs. It is refused for this host and for a host in alive, and
// is idempotent (running it again reclaims whatever still belongs to the
// removed host, e.g. blocks that reached it from a concurrent rmpeer).
//
// Precondition (docs/ipam.md): the dead host's last writes must have
// reached this host (wait until it has been failed for a couple of
// push-pull intervals and the cluster is not partitioned). Concurrent
// RemovePeer calls on several hosts, even on both sides of a partition,
// then agree on one owner per block: the new owner is the first live heir
// along the removed host's recorded heir list, not a choice made from the
// caller's view of who is alive.
// ErrUnknownPeer is wrapped by RemovePeer for a name this host's map does
// not know (a host that never held an address).
var ErrUnknownPeer = errors.New("unknown peer")

func (a *Allocator) RemovePeer(name string, alive []string) error {
	a.mu.Lock()
	defer a.unlockAndFlush()
	if name == a.self.Name {
		return errors.New("refusing to remove this host itself; run rmpeer on another host once this one is gone")
	}
	if a.v.seed == 0 {
		return errors.New("this host has no IPAM map yet")
	}
	targets, err := a.removalTargets(name, alive)
	if err != nil || len(targets) == 0 {
		return err
	}
	a.begin()
	for _, id := range targets {
		if !a.v.isRemoved(id) {
			a.v.setRemoval(id, append([]ident(nil), a.v.hosts[id].Heirs...))
			a.tx.removals = append(a.tx.removals, id)
			a.bcast.removals = append(a.bcast.removals, id)
		}
		a.removedByMe[id] = true
	}
	n, deferred := a.followUps(nil)
	if err := a.commit(); err != nil {
		return err
	}
	a.log.Info("removed a peer from the IPAM map", "peer", name, "identities", len(targets), "reclaimed_blocks", n, "deferred", deferred)
	a.notify()
	return nil
}

// removalTargets lists the identities rmpeer NAME removes: every life of
// the name this view knows, except the live one when the name is alive
// (then only earlier lives, whose state was lost, are removed).
func (a *Allocator) removalTargets(name string, alive []string) ([]ident, error) {
	isAlive := false
	for _, n := range alive {
		isAlive = isAlive || n == name
	}
	ids := map[ident]bool{}
	for id := range a.v.hosts {
		if id.Name == name {
			ids[id] = true
		}
	}
	for _, e := range a.v.blocks {
		if e.Owner.Name == name {
			ids[e.Owner] = true
		}
	}
	everRemoved := false
	for id := range a.v.removed {
		everRemoved = everRemoved || id.Name == name
	}
	if len(ids) == 0 {
		if everRemoved {
			return nil, nil // already removed and nothing left: idempotent
		}
		return nil, fmt.Errorf("%w %s: it is not in this host's IPAM map", ErrUnknownPeer, name)
	}
	live, hasLive := a.v.current(name)
	var out []ident
	for id := range ids {
		if isAlive && hasLive && id.Inc >= live.Inc {
			continue
		}
		out = append(out, id)
	}
	if isAlive && len(out) == 0 {
		return nil, fmt.Errorf("refusing to remove %s: it is alive; stop its agent first, and run rmpeer only for a host that will not come back with its state", name)
	}
	if isAlive && !hasLive {
		return nil, fmt.Errorf("refusing to remove %s: it is alive and this host has no record of which of its lives is current; wait for a gossip round", name)
	}
	sortIdents(out)
	return out, nil
}

// followUps reclaims the given blocks (nil: all) that are owned by an
// identity this host removed. Only a host that ran rmpeer for an identity
// reclaims its blocks: its view held that identity's last writes. It
// returns how many blocks moved and how many wait for a removal record.
//
// Only confirmed entries are reclaimed: a hand-over to the removed
// identity that this view heard only through a relay (a member can write
// "A gave block b to the removed host" under its own name) would otherwise
// become this host's own, trusted reclaim of a block its real owner still
// uses (the simulation found exactly that: a duplicate address). Such a
// block waits until its writer confirms it (mergeState follows up blocks
// confirmed later).
func (a *Allocator) followUps(blocks []uint32) (moved, deferred int) {
	check := func(b uint32) {
		e := a.v.blocks[b]
		if e.Owner.Name == "" || !a.removedByMe[e.Owner] || !a.v.isRemoved(e.Owner) || a.v.unv[b] {
			return
		}
		if e.reasserted() {
			return // the "removed" host is alive and disputes it: leave it
		}
		origin := e.Origin
		if origin.zero() {
			origin = e.Owner
		}
		target, res := a.v.heirOf(origin)
		if res == walkDeferred {
			deferred++
			return
		}
		if res == walkNone {
			target = ident{}
		}
		if e.Ver >= maxVer {
			return
		}
		a.writeBlock(b, entry{Ver: e.Ver + 1, Owner: target, Origin: origin})
		delete(a.freed, b)
		moved++
	}
	if blocks == nil {
		for b := range a.v.blocks {
			check(uint32(b))
		}
	} else {
		for _, b := range blocks {
			check(b)
		}
	}
	return moved, deferred
}

// Leave hands every block without allocations and without addresses
// cooling down to live peers (this host's heirs first), as the owner's own
// act: use it before taking a host out of the cluster for good. It returns
// how many blocks were handed over; blocks still in use stay (rmpeer them
// once the host is gone).
func (a *Allocator) Leave(alive []string) (int, error) {
	a.mu.Lock()
	defer a.unlockAndFlush()
	targets := a.leaveTargets(alive)
	if len(targets) == 0 {
		return 0, errors.New("no live peer to hand this host's blocks to")
	}
	a.begin()
	n := 0
	for _, b := range append([]uint32(nil), a.ownedBlocks()...) {
		if a.blockAllocs[b] > 0 || a.cooling(b) > 0 {
			continue
		}
		if a.v.blocks[b].Ver >= maxVer {
			continue
		}
		a.writeBlock(b, entry{Ver: a.v.blocks[b].Ver + 1, Owner: targets[n%len(targets)], Prev: a.self})
		delete(a.freed, b)
		n++
	}
	a.writeSelf(func(h *hostRec) {})
	if err := a.commit(); err != nil {
		return 0, err
	}
	a.notify()
	return n, nil
}

func (a *Allocator) leaveTargets(alive []string) []ident {
	live := map[string]bool{}
	for _, n := range alive {
		live[n] = true
	}
	var out []ident
	seen := map[string]bool{}
	add := func(id ident) {
		if id.Name != a.self.Name && live[id.Name] && !seen[id.Name] && !a.v.isRemoved(id) {
			seen[id.Name] = true
			out = append(out, id)
		}
	}
	for _, h := range a.v.hosts[a.self].Heirs {
		add(h)
	}
	names := append([]string(nil), alive...)
	sort.Strings(names)
	for _, n := range names {
		if id, ok := a.v.current(n); ok {
			add(id)
		}
	}
	return out
}

// heirCount is how many successors a host names as its heirs.
const heirCount = 3

// PeersChanged tells the allocator who is alive (self included or not).
// It picks whom to ask for space, and keeps this host's heir list (the
// next live hosts after it in name order) current. Idempotent.
func (a *Allocator) PeersChanged(alive []string) {
	a.mu.Lock()
	defer a.unlockAndFlush()
	set := map[string]bool{}
	for _, n := range alive {
		set[n] = true
	}
	changed := len(set) != len(a.alive)
	for n := range set {
		if !a.alive[n] {
			changed = true
		}
	}
	a.alive = set
	if changed {
		a.prune()
		a.refreshHeirs()
		a.notify()
	}
}

// refreshHeirs rewrites this host's heir list when its live successors
// changed, and reports whether it did. Alone, it keeps the old list (the
// others may only be cut off). Caller holds a.mu.
func (a *Allocator) refreshHeirs() bool {
	if a.v.seed == 0 || a.alive == nil {
		return false
	}
	heirs := a.successors(a.alive)
	if len(heirs) == 0 || sameIdents(heirs, a.v.hosts[a.self].Heirs) {
		return false
	}
	a.writeSelf(func(h *hostRec) { h.Heirs = heirs })
	return true
}

// successors names the next live hosts after this one in name order (a
// ring), as the identities this view knows for them. A live host whose
// record has not arrived yet is skipped: an heir must be a known identity.
func (a *Allocator) successors(alive map[string]bool) []ident {
	cur := map[string]ident{}
	for id := range a.v.hosts {
		if c, ok := cur[id.Name]; alive[id.Name] && (!ok || id.Inc > c.Inc) {
			cur[id.Name] = id
		}
	}
	var names []string
	for n, id := range cur {
		if n != a.self.Name && !a.v.isRemoved(id) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	start := sort.SearchStrings(names, a.self.Name)
	var out []ident
	for i := 0; i < len(names) && len(out) < heirCount; i++ {
		out = append(out, cur[names[(start+i)%len(names)]])
	}
	return out
}

func sameIdents(x, y []ident) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// BlockInfo describes one block for `flatmesh ipam`.
type BlockInfo struct {
	Prefix    netip.Prefix
	Owner     string // "" when unowned
	OwnerInc  uint32 // incarnation of the owner (non-zero after a removed name came back)
	Version   uint64
	Capacity  int  // addresses that can be handed out
	Used      int  // allocated addresses
	Free      int  // Capacity - Used (- Cooling)
	Cooling   int  // released less than Cooldown ago (own blocks only)
	Exact     bool // Used/Free are this host's own numbers, not gossip
	Reachable bool // the owner is this host or alive (per PeersChanged)
}

// Blocks lists every block in address order. Used/Free are exact for this
// host's blocks and as last gossiped (push-pull) for the others.
func (a *Allocator) Blocks() []BlockInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]BlockInfo, 0, len(a.v.blocks))
	for i, e := range a.v.blocks {
		b := uint32(i)
		bi := BlockInfo{Prefix: a.sp.blockPrefix(b), Owner: e.Owner.Name, OwnerInc: e.Owner.Inc,
			Version: e.Ver, Capacity: int(a.sp.capacity[b])}
		switch {
		case e.Owner == a.self:
			bi.Used, bi.Cooling, bi.Exact, bi.Reachable = a.blockAllocs[b], a.cooling(b), true, true
		case e.Owner.Name != "":
			bi.Used = int(a.v.hosts[e.Owner].Use[b])
			bi.Reachable = a.alive[e.Owner.Name]
		}
		bi.Free = max(bi.Capacity-bi.Used-bi.Cooling, 0)
		out = append(out, bi)
	}
	return out
}

// OwnedBlocks lists the blocks whose owner has this name.
func (a *Allocator) OwnedBlocks(owner string) []netip.Prefix {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []netip.Prefix
	for i, e := range a.v.blocks {
		if e.Owner.Name == owner && owner != "" {
			out = append(out, a.sp.blockPrefix(uint32(i)))
		}
	}
	return out
}

// BlocksByOwner maps each owner name to its blocks (unowned blocks left out).
func (a *Allocator) BlocksByOwner() map[string][]netip.Prefix {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string][]netip.Prefix{}
	for i, e := range a.v.blocks {
		if e.Owner.Name != "" {
			out[e.Owner.Name] = append(out[e.Owner.Name], a.sp.blockPrefix(uint32(i)))
		}
	}
	return out
}

// DigestValue hashes the ownership map (seed and every block's entry). Two
// hosts with the same value see the same owner for every block.
func (a *Allocator) DigestValue() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.digest()
}

// Digest is DigestValue as 16 hex digits.
func (a *Allocator) Digest() string { return fmt.Sprintf("%016x", a.DigestValue()) }

func (a *Allocator) digest() uint64 {
	h := sha256.New()
	var w writer
	w.u64(a.v.seed)
	for _, e := range a.v.blocks {
		w.uvarint(e.Ver)
		w.str(e.Owner.Name)
		w.uvarint(uint64(e.Owner.Inc))
		w.str(e.Origin.Name)
		w.uvarint(uint64(e.Origin.Inc))
		w.str(e.Prev.Name)
		w.uvarint(uint64(e.Prev.Inc))
		if len(w.b) > 4096 {
			h.Write(w.b)
			w.b = w.b[:0]
		}
	}
	h.Write(w.b)
	return binary.BigEndian.Uint64(h.Sum(nil))
}

// Check lists problems in this host's state; empty means healthy. It looks
// at: the map (seeded, every block owned, nothing left with a removed
// host), this host's allocations (inside blocks it owns, not excluded,
// not a gateway, no address twice), and conflicts seen in gossip (another
// seed, another address space). Comparing views across hosts is done by
// comparing Digest values.
func (a *Allocator) Check() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var p []string
	if a.v.seed == 0 {
		p = append(p, "this host has no IPAM map yet: it has not heard from a seeded host")
	}
	if a.removedSelf {
		p = append(p, fmt.Sprintf("this host (%s) was removed by rmpeer while holding %d allocations, which may now be handed out elsewhere: detach those containers (it starts a new life once all are released)", a.self, len(a.allocs)))
	}
	p = append(p, a.checkAllocs()...)
	if a.v.seed != 0 {
		p = append(p, a.checkMap()...)
	}
	return append(p, a.conflictList()...)
}

func (a *Allocator) checkAllocs() []string {
	var p []string
	seen := map[uint64]*alloc{}
	for _, al := range a.sortedAllocs() {
		addr := a.sp.addrAt(al.off)
		b := a.sp.blockOf(al.off)
		if other, dup := seen[al.off]; dup {
			p = append(p, fmt.Sprintf("address %s is allocated twice here: %s/%s and %s/%s", addr, other.ID, other.IfName, al.ID, al.IfName))
		}
		seen[al.off] = al
		if e := a.v.blocks[b]; e.Owner != a.self {
			p = append(p, fmt.Sprintf("allocation %s/%s (%s) is in block %s, which belongs to %q (version %d), not to this host", al.ID, al.IfName, addr, a.sp.blockPrefix(b), e.Owner.String(), e.Ver))
		}
		if !a.sp.usable(al.off) {
			p = append(p, fmt.Sprintf("allocation %s/%s (%s) is an excluded or gateway address", al.ID, al.IfName, addr))
		}
	}
	return p
}

func (a *Allocator) checkMap() []string {
	var p []string
	unowned := 0
	stale := map[string]int{}
	for _, e := range a.v.blocks {
		switch {
		case e.Owner.Name == "":
			unowned++
		case a.v.isRemoved(e.Owner):
			stale[e.Owner.String()]++
		}
	}
	if n := len(a.untrusted); n > 0 {
		p = append(p, fmt.Sprintf("%d blocks are named this host's by gossip it could not verify (a stale view or a forged message); they are not used: their owner may re-assert them, or rmpeer them if it is gone", n))
	}
	if unowned > 0 {
		p = append(p, fmt.Sprintf("%d blocks have no owner (a reclaim found no live heir); that space cannot be handed out", unowned))
	}
	var names []string
	for n := range stale {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p = append(p, fmt.Sprintf("%d blocks still belong to removed host %s: run `flatmesh rmpeer %s` again on a host that has seen its last state", stale[n], n, n))
	}
	return p
}
