package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// RefusedError says why a peer (or a whole cluster, at join) was refused.
// Join returns it wrapped, so callers can errors.As it.
type RefusedError struct {
	Peer   string // the refused node ("" when the application refused a merge)
	Reason string // full sentence naming what differs

	owner string     // duplicate underlay: the member that has it
	addr  netip.Addr // duplicate underlay: the address
	// transient: the conflict may resolve itself (the other member may be
	// about to be declared failed), so JoinRetry keeps trying.
	transient bool
	// notify: only this side can see the conflict (a pinned key), so the
	// refused node is told (Cluster.notifyRefused).
	notify bool
	at     time.Time // when it was noted (refused)
}

// Transient reports whether retrying may succeed without a configuration
// change: a duplicate underlay or node name held by a member that may be a
// stale, not yet failed, earlier life of a host.
func (e *RefusedError) Transient() bool { return e.transient }

func (e *RefusedError) Error() string { return e.Reason }

// refuser applies the refusal rules. It reads only its own copies of state
// (local meta via a func, the member table), because memberlist calls it with
// its node lock held. Safe for concurrent use.
type refuser struct {
	self    string
	local   func() Meta
	members *memberTable
	log     hclog.Logger
	pins    *pinStore // nil: no pinning (tests of the other rules)
	onPin   func()    // called after a new pin (the notifier saves it); may be nil
	// onNotify tells a refused node why (e.notify); called at most as often
	// as the refusal is logged. It must not block. May be nil.
	onNotify func(e *RefusedError, n *memberlist.Node)

	// joining counts our own Join calls in progress: while we join, we are
	// the newcomer in a duplicate-underlay message.
	joining atomic.Int32

	mu      sync.Mutex
	logged  map[string]time.Time // reason -> last logged (rate limit)
	recent  []*RefusedError      // last refusals, for Join to find
	logFreq time.Duration
}

func newRefuser(self string, local func() Meta, members *memberTable, log hclog.Logger) *refuser {
	return &refuser{self: self, local: local, members: members, log: log,
		logged: make(map[string]time.Time), logFreq: time.Minute}
}

// checkPeer returns the reason to refuse a live peer, or nil.
// The rules: the metadata must decode, the cluster name and the settings
// fingerprint must equal ours, and the underlay address must not belong to
// another live member (the Vagrant 10.0.2.15 trap).
func (r *refuser) checkPeer(name string, raw []byte) *RefusedError {
	if name == r.self {
		return nil // ourselves: memberlist handles name conflicts
	}
	meta, err := DecodeMeta(raw)
	if err != nil {
		return &RefusedError{Peer: name, Reason: fmt.Sprintf("peer %q sent node metadata this agent cannot read: %v", name, err)}
	}
	local := r.local()
	if meta.Cluster != local.Cluster {
		return &RefusedError{Peer: name, Reason: fmt.Sprintf("peer %q is in cluster %q, this agent is in %q", name, meta.Cluster, local.Cluster)}
	}
	if meta.Fingerprint != local.Fingerprint {
		what := ""
		if meta.Mode != local.Mode {
			what = fmt.Sprintf(" (it runs mode %q, this agent runs %q)", meta.Mode, local.Mode)
		}
		return &RefusedError{Peer: name, Reason: fmt.Sprintf(
			"peer %q has cluster settings fingerprint %016x, this agent has %016x%s: the cluster-wide settings differ",
			name, meta.Fingerprint, local.Fingerprint, what)}
	}
	if owner, ok := r.members.underlayOwner(meta.Underlay, name); ok {
		return dupUnderlay(name, meta.Underlay, owner)
	}
	return r.checkKey(name, meta.SignKey)
}

// checkKey refuses a peer without a signing key, one whose key differs
// from the key pinned for its name, and a new name when the pins are full.
func (r *refuser) checkKey(name string, k PublicKey) *RefusedError {
	if r.pins == nil {
		return nil
	}
	if k == (PublicKey{}) {
		return &RefusedError{Peer: name, Reason: fmt.Sprintf(
			"peer %q does not sign its gossip (an agent from before signing): upgrade it; every member must run a version that signs", name)}
	}
	if pinned, bad := r.pins.conflict(name, k); bad {
		return &RefusedError{Peer: name, Reason: fmt.Sprintf(
			"peer %q presents signing key %s, but this agent pinned %s for that name when it first saw it: "+
				"if %q was reinstalled and lost its state dir, stop its agent, run `flatmesh rmpeer %s` on a member "+
				"once `flatmesh peers` shows it failed (that forgets the old key on every member), then start it again; "+
				"otherwise another host is using the name %q", name, k, pinned, name, name, name), notify: true}
	}
	if r.pins.full(name) {
		return &RefusedError{Peer: name, Reason: fmt.Sprintf(
			"peer %q is new but %d member names are pinned already: run `flatmesh rmpeer` for members that are gone", name, maxPins)}
	}
	return nil
}

// pin pins name's key on first sight (NotifyAlive, after checkPeer).
func (r *refuser) pin(name string, raw []byte) {
	if r.pins == nil || name == r.self {
		return
	}
	meta, err := DecodeMeta(raw)
	if err != nil {
		return
	}
	if r.pins.pinFirst(name, meta.SignKey, time.Now()) {
		r.log.Info("pinned the signing key of a member seen for the first time", "peer", name, "key", meta.SignKey)
		if r.onPin != nil {
			r.onPin()
		}
	}
}

func dupUnderlay(name string, addr netip.Addr, owner string) *RefusedError {
	return &RefusedError{Peer: name, owner: owner, addr: addr, transient: true, Reason: fmt.Sprintf(
		"node %q advertises underlay %s, already used by live member %q (give each host its own --advertise/--iface address)",
		name, addr, owner)}
}

// checkMerge checks the members of a cluster we are merging with at join
// (memberlist NotifyMerge). Only live remote members are checked: dead ones
// are only suspected by memberlist, never added.
func (r *refuser) checkMerge(peers []*memberlist.Node) *RefusedError {
	for _, n := range peers {
		if n.State != memberlist.StateAlive && n.State != memberlist.StateSuspect {
			continue
		}
		if n.Name == r.self {
			if err := r.checkSelfEcho(n); err != nil {
				return err
			}
			continue
		}
		if err := r.checkPeer(n.Name, n.Meta); err != nil {
			if err.owner == r.self && r.joining.Load() > 0 {
				// We are the one joining: name ourselves as the newcomer.
				return dupUnderlay(r.self, err.addr, n.Name)
			}
			return err
		}
	}
	return nil
}

// checkSelfEcho refuses a cluster that has a live member with our name but
// another address: node names must be unique.
func (r *refuser) checkSelfEcho(n *memberlist.Node) *RefusedError {
	self, ok := r.members.get(r.self)
	if !ok {
		return nil
	}
	addr := addrFromIP(n.Addr)
	if addr == self.Addr && n.Port == self.Port {
		return nil // our own earlier life at the same address
	}
	return &RefusedError{Peer: n.Name, transient: true, Reason: fmt.Sprintf(
		"the cluster already has a live member named %q at %s, this agent is %q at %s: node names must be unique",
		n.Name, netip.AddrPortFrom(addr, n.Port), r.self, netip.AddrPortFrom(self.Addr, self.Port))}
}

// refusedNode is refused for a node: it also tells the node when only this
// side can see the conflict (every join attempt; from gossip, at most as
// often as it is logged).
func (r *refuser) refusedNode(e *RefusedError, where string, nodes ...*memberlist.Node) {
	logged := r.refused(e, where)
	if !e.notify || r.onNotify == nil || !logged && where != "join" {
		return
	}
	for _, n := range nodes {
		if n.Name == e.Peer {
			r.onNotify(e, n)
		}
	}
}

// refusedBy records that member from refuses this agent (its notice): Join
// reports it.
func (r *refuser) refusedBy(from, reason string) {
	e := &RefusedError{Peer: r.self, Reason: fmt.Sprintf("member %q refuses this agent: %s", from, reason)}
	if r.refused(e, "notice") {
		r.log.Error("a member refuses this agent", "member", from, "reason", reason)
	}
}

// refusedSelf returns a refusal of this agent noted since t.
func (r *refuser) refusedSelf(since time.Time) *RefusedError {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.recent) - 1; i >= 0; i-- {
		if r.recent[i].Peer == r.self && r.recent[i].at.After(since) {
			return r.recent[i]
		}
	}
	return nil
}

// refused logs a refusal (at most once a minute per reason) and remembers it
// for Join. It reports whether it logged.
func (r *refuser) refused(e *RefusedError, where string) bool {
	now := time.Now()
	r.mu.Lock()
	last, seen := r.logged[e.Reason]
	doLog := !seen || now.Sub(last) >= r.logFreq
	if doLog {
		if len(r.logged) > 1000 {
			clear(r.logged)
		}
		r.logged[e.Reason] = now
	}
	e.at = now
	r.recent = append(r.recent, e)
	if len(r.recent) > 16 {
		r.recent = r.recent[1:]
	}
	r.mu.Unlock()
	if doLog && e.Peer != r.self {
		r.log.Warn("refusing peer", "peer", e.Peer, "during", where, "reason", e.Reason)
	}
	return doLog
}

// find returns a recent refusal whose text appears in msg.
func (r *refuser) find(msg string) *RefusedError {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.recent) - 1; i >= 0; i-- {
		if strings.Contains(msg, r.recent[i].Reason) {
			return r.recent[i]
		}
	}
	return nil
}

// mergeDelegate refuses whole-cluster merges at join.
type mergeDelegate struct {
	r   *refuser
	app AppDelegate // may be nil
}

var _ memberlist.MergeDelegate = (*mergeDelegate)(nil)

// NotifyMerge is called by memberlist on both sides of a join, with the
// other side's member list. It must not block.
func (d *mergeDelegate) NotifyMerge(peers []*memberlist.Node) error {
	if e := d.r.checkMerge(peers); e != nil {
		d.r.refusedNode(e, "join", peers...)
		return e
	}
	if d.app == nil {
		return nil
	}
	remote := make([]Peer, 0, len(peers))
	for _, n := range peers {
		if n.Name == d.r.self {
			continue
		}
		meta, err := DecodeMeta(n.Meta)
		if err != nil {
			continue // a dead member with unreadable meta: not merged anyway
		}
		remote = append(remote, Peer{Name: n.Name, Addr: addrFromIP(n.Addr), Port: n.Port,
			State: nodeState(n.State), Meta: meta})
	}
	if err := d.app.CheckMerge(remote); err != nil {
		e := &RefusedError{Reason: fmt.Sprintf("the application refused the merge: %v", err)}
		var re *RefusedError
		if errors.As(err, &re) {
			e.Peer = re.Peer
		}
		d.r.refused(e, "join")
		return e
	}
	return nil
}

// nodeState maps memberlist's state (only set on nodes given to NotifyMerge).
func nodeState(s memberlist.NodeStateType) State {
	switch s {
	case memberlist.StateAlive:
		return StateAlive
	case memberlist.StateSuspect:
		return StateSuspect
	case memberlist.StateLeft:
		return StateLeft
	default:
		return StateFailed
	}
}

// aliveDelegate refuses single nodes learnt from gossip.
type aliveDelegate struct{ r *refuser }

var _ memberlist.AliveDelegate = (*aliveDelegate)(nil)

// NotifyAlive is called by memberlist, with its node lock held, for every
// alive message (ours included). It must not block or call memberlist.
func (d *aliveDelegate) NotifyAlive(n *memberlist.Node) error {
	if e := d.r.checkPeer(n.Name, n.Meta); e != nil {
		d.r.refusedNode(e, "gossip", n)
		return e
	}
	d.r.pin(n.Name, n.Meta)
	return nil
}
