package ipam

import (
	"bytes"
	"fmt"
)

// Rules for state from peers that may be buggy or hostile (anyone holding
// the gossip key): docs/ipam.md, "Hostile members". In short: a message is
// accepted only from a live member speaking under its own name; a host's
// record only from that host; no removal of a live member or of this host;
// versions move by bounded steps and never near wrapping; this host never
// lets a block it owns go unless it wrote the change, and answers a forged
// change with a higher version; a block handed to it counts as its own only
// when the previous owner itself handed it over (or a reclaim it can check).

const (
	// maxVer is the highest version anyone writes or accepts: far below
	// wrapping, and unreachable by honest hosts (one step per write). No
	// bound on steps: a bound relative to a view makes views that hold
	// different versions accept different things, and the simulation
	// showed a forger splitting views for good that way.
	maxVer = 1 << 62
	// maxRecords caps host records and removal records each.
	maxRecords = 4096
)

// memberState says whether name is a live member; known is false when the
// allocator has no membership information yet.
func (a *Allocator) memberState(name string) (live, known bool) {
	if a.opts.IsMember != nil {
		return a.opts.IsMember(name), true
	}
	if a.alive == nil {
		return false, false
	}
	return a.alive[name], true
}

// senderOK checks who a message claims to come from against the gossip
// layer's sender (from, "" for push-pull) and the membership.
func (a *Allocator) senderOK(from, sender string) error {
	switch {
	case from != "" && sender != from:
		return fmt.Errorf("message names %q as its sender but came from %q", sender, from)
	case sender == a.self.Name:
		return fmt.Errorf("message claims to come from this host")
	}
	if live, known := a.memberState(sender); known && !live {
		return fmt.Errorf("%q is not a live member", sender)
	}
	return nil
}

// reject notes that part of a message was refused (its payload hash is then
// not remembered, so a later copy is looked at again).
func (a *Allocator) reject(what string, args ...any) {
	a.rejected = true
	a.rejects++
	if a.rejects <= 20 || a.rejects%1000 == 0 {
		a.log.Debug("refusing part of a peer's IPAM state", "what", fmt.Sprintf(what, args...), "total", a.rejects)
	}
}

// mergeEntry merges one incoming block entry from sender s and reports
// whether it changed the view and whether this host gained a block it can
// trust. Caller holds a.mu inside a transaction (a.tx).
//
// Every entry of the view is either confirmed or not (view.unv, local
// knowledge): confirmed when this host wrote it, when it is a seeded block,
// when its writer (Prev) sent it and this view had the writer's confirmed
// ownership just before, or when it is a reclaim of a confirmed block of an
// identity this view knows was removed. Relays by others are kept (views
// must converge) but stay unconfirmed until the writer itself sends the
// same entry. A block is trusted as this host's own only through a
// confirmed change; nothing unconfirmed is given away or reclaimed with
// trust. (A member can forge any relay, so only the writer's own word
// counts.) The gossiped per-entry flag is informational only.
func (a *Allocator) mergeEntry(s ident, b uint32, e entry, _ bool) (changed, gained bool) {
	cur := a.v.blocks[b]
	if !entryLess(cur, e) {
		if cur == e && a.v.unv[b] {
			if p, ok := a.pre[b]; ok && a.confirms(s, p.e, p.conf, e) {
				delete(a.v.unv, b)
				delete(a.pre, b)
				a.gen++
				if e.Owner == a.self && a.untrusted[b] {
					delete(a.untrusted, b)
					a.ownedOK = false
					return false, true
				}
			}
		}
		return false, false
	}
	if e.Ver > maxVer {
		a.reject("block %d: version %d over the limit", b, e.Ver)
		return false, false
	}
	mine := cur.Owner == a.self && !a.untrusted[b]
	if e.Prev == a.self || mine && e.Owner != a.self {
		a.reject("block %d: a change this host did not write (%s, written by %s, from %s)", b, e.Owner, e.Prev, s)
		a.answerForgery(b, e, mine)
		return false, false
	}
	if !e.Origin.zero() && e.Prev.zero() && !a.validReclaim(e) {
		a.reject("block %d: reclaim to %s from %s that this view cannot follow", b, e.Owner, e.Origin)
		return false, false
	}
	curConf := !a.v.unv[b]
	conf := a.confirms(s, cur, curConf, e)
	switch {
	case e.Owner == a.self && !mine:
		if conf && a.heirIsSelf(e) {
			delete(a.untrusted, b)
			gained = true
		} else {
			a.untrusted[b] = true
		}
	case e.Owner != a.self:
		delete(a.untrusted, b)
	}
	if conf {
		delete(a.v.unv, b)
		delete(a.pre, b)
	} else {
		a.v.unv[b] = true
		a.pre[b] = preEntry{cur, curConf}
	}
	a.v.blocks[b] = e
	return true, gained
}

// confirms says whether e, sent by s over cur (confirmed or not), is a
// confirmed change (see mergeEntry).
func (a *Allocator) confirms(s ident, cur entry, curConf bool, e entry) bool {
	switch {
	case seeded(cur, e):
		return true
	case !e.Origin.zero() && e.Prev.zero(): // a reclaim
		return curConf && !cur.Owner.zero() && a.v.isRemoved(cur.Owner) && (e.Origin == cur.Owner || e.Origin == cur.Origin)
	case e.Prev.zero() || e.Prev == e.Owner: // a restoration or a re-assertion
		return false
	}
	return s == e.Prev && cur.Owner == e.Prev && curConf && !cur.reasserted()
}

// heirIsSelf: a reclaim must end at this host by this view's heir walk; a
// hand-over needs nothing more.
func (a *Allocator) heirIsSelf(e entry) bool {
	if e.Origin.zero() || !e.Prev.zero() {
		return true
	}
	h, res := a.v.heirOf(e.Origin)
	return res == walkFound && h == a.self
}

// seeded: e is a block as its seed host created it, over an empty view.
func seeded(cur, e entry) bool {
	return cur.Ver == 0 && e.Ver == 1 && e.Prev.zero() && e.Origin.zero()
}

// preEntry is what a view held before an entry it could not confirm yet
// (kept in memory only: after a restart such an entry stays unconfirmed).
type preEntry struct {
	e    entry
	conf bool
}

// validReclaim: a reclaim starts from an identity this view knows was
// removed and names an heir reachable through the recorded heir lists (or
// nobody).
func (a *Allocator) validReclaim(e entry) bool {
	return a.v.isRemoved(e.Origin) && (e.Owner.zero() || a.v.inHeirClosure(e.Origin, e.Owner))
}

// answerForgery answers a change this host did not write: for its own
// block it re-asserts ownership above the forged version; for another block
// it re-publishes its own entry above it (written by this host, so nobody
// can mistake the forged hand-over for one it made).
func (a *Allocator) answerForgery(b uint32, e entry, mine bool) {
	cur := a.v.blocks[b]
	if e.Ver >= maxVer || a.v.seed == 0 {
		return
	}
	if mine {
		a.writeBlock(b, entry{Ver: e.Ver + 1, Owner: a.self, Prev: a.self})
		a.log.Warn("a peer's state took a block from this host; re-asserted it", "block", a.sp.blockPrefix(b), "forged_owner", e.Owner.String())
		return
	}
	// No writer named: a restoration vouches for nothing (this view may be
	// stale or fed by forged relays), so nobody may trust it as a hand-over.
	// A block this view never saw (restarted before a lazy save: its own
	// writes were saved, so the forgery is one) is restored as unowned:
	// staying silent left every other view holding the forged entry and
	// this one apart for good (the simulation's "views apart after a heal").
	// The restoration keeps the trust of what it restores: an entry this
	// view only heard through relays stays unconfirmed (else the host that
	// removes its owner would reclaim it as confirmed: a version war with
	// the host that really holds the block, seen in the simulation).
	unconfirmed := a.v.unv[b]
	a.writeBlock(b, entry{Ver: e.Ver + 1, Owner: cur.Owner, Origin: cur.Origin})
	if unconfirmed {
		a.v.unv[b] = true
	}
}

// mergeRemovals merges removal records: never this host (a live host is
// not silenced: the claim is noted for Check), never a live member's
// current life, only identities this view knows, at most maxRecords.
// Records nothing needs any more are pruned (prune).
func (a *Allocator) mergeRemovals(s ident, rs map[ident][]ident) []ident {
	var out []ident
	for id, heirs := range rs {
		if id.Name == a.self.Name && id.Inc >= a.self.Inc {
			a.reject("removal of this host")
			a.noteConflict("removal:"+s.Name, fmt.Sprintf("peer %s says this host (%s) was removed by rmpeer; it is alive and keeps its blocks: if an operator ran rmpeer for it by mistake, check `flatmesh ipam check` on both sides", s.Name, a.self))
			continue
		}
		cur, ok := a.v.removed[id]
		if ok && bytes.Compare(canonHeirs(heirs), canonHeirs(cur)) >= 0 {
			continue
		}
		if !ok {
			if a.liveIdent(id) {
				a.reject("removal of live member %s", id)
				continue
			}
			if len(a.v.removed) >= maxRecords {
				a.reject("removal of %s: too many removal records", id)
				continue
			}
		}
		a.v.setRemoval(id, append([]ident(nil), heirs...))
		out = append(out, id)
	}
	return out
}

// liveIdent: id is (as far as this view knows) the current life of a live
// member. A removal of an older life is accepted once the newer life's
// record has arrived.
func (a *Allocator) liveIdent(id ident) bool {
	if id.Name == a.self.Name {
		return id.Inc >= a.self.Inc
	}
	live, known := a.memberState(id.Name)
	if !known || !live {
		return false
	}
	cur, ok := a.v.current(id.Name)
	return !ok || id.Inc >= cur.Inc
}

// mergeHosts merges host records: a record this view has never seen is
// taken from anyone (trust on first sight: that is how a new host learns
// who exists and which life is current); after that only its own host may
// change it (a forged first copy is replaced by the host's next write,
// which a host makes when it sees a copy of its record that differs).
// At most maxRecords. Copies of this host's own record only raise its
// version.
func (a *Allocator) mergeHosts(s ident, hs map[ident]hostRec) delta {
	var d delta
	for id, h := range hs {
		if id == a.self {
			a.mergeOwnRecord(h)
			continue
		}
		cur, ok := a.v.hosts[id]
		if id != s && ok {
			continue // an update of someone else's record: only its host may send it
		}
		if ok && !hostLess(cur, h) {
			continue
		}
		if h.Ver > maxVer || !ok && len(a.v.hosts) >= maxRecords {
			a.reject("record of %s version %d", id, h.Ver)
			continue
		}
		if !ok {
			d.newHosts++
		}
		a.v.hosts[id] = h.clone()
		d.hosts = append(d.hosts, id)
	}
	sortIdents(d.hosts)
	return d
}

// prune forgets records nobody needs, so a flood (or a long history of
// departed hosts) cannot grow the state: removal records of identities that
// own no block, are no block's origin and cannot be reached through the heir
// lists of removals that are kept (heir walks need those); then host
// records of identities that are not live members, own no block and have
// no kept removal. Caller holds a.mu.
func (a *Allocator) prune() {
	need := map[ident]bool{}
	var queue []ident
	for _, e := range a.v.blocks {
		for _, id := range []ident{e.Owner, e.Origin} {
			if !id.zero() && !need[id] {
				need[id] = true
				queue = append(queue, id)
			}
		}
	}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		for _, h := range a.v.removed[id] {
			if !need[h] {
				need[h] = true
				queue = append(queue, h)
			}
		}
	}
	for id := range a.v.removed {
		if !need[id] {
			delete(a.v.removed, id)
			delete(a.removedByMe, id)
			a.dirty = true
		}
	}
	for id := range a.v.hosts {
		if id.Name == a.self.Name || need[id] {
			continue
		}
		if live, known := a.memberState(id.Name); known && !live {
			delete(a.v.hosts, id)
			a.dirty = true
		}
	}
}
