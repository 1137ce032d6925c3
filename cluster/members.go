package cluster

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// State is a member's state as this agent sees it.
type State string

const (
	StateAlive State = "alive"
	// StateSuspect: alive but suspected by failure detection (memberlist
	// does not tell its delegates; Cluster.Members asks it).
	StateSuspect State = "suspect"
	StateFailed  State = "failed" // declared dead by failure detection
	StateLeft    State = "left"   // left gracefully (Cluster.Leave)
)

// Live reports whether a member in state s still takes part: alive or
// suspect.
func (s State) Live() bool { return s == StateAlive || s == StateSuspect }

// Peer is an immutable snapshot of one member. Addr and Port are the
// member's gossip (memberlist) address; Meta.Underlay is the address the data
// plane uses.
type Peer struct {
	Name  string
	Addr  netip.Addr
	Port  uint16
	State State
	Meta  Meta
}

// DefaultReapAfter is how long failed and left members stay in Members
// (and in peers.json) before they are forgotten.
const DefaultReapAfter = 24 * time.Hour

// memberTable is this agent's own view of the membership, fed by memberlist
// events. It exists because memberlist's public API lists only live nodes and
// never says whether a node failed or left, and because memberlist calls its
// delegates with its node lock held (so they must not call back into it).
// All methods are safe for concurrent use and never block on the network.
type memberTable struct {
	mu        sync.Mutex
	self      string
	reapAfter time.Duration
	now       func() time.Time
	m         map[string]*memberEntry
	seenOther bool // a member other than self has been seen in this run
	// leaving: members that told us (Cluster.Leave's direct message) they
	// are leaving, and when; their disappearance is "left".
	leaving map[string]time.Time
	// suspect: live members this node's failure detector suspects (from
	// memberlist's log line; cleared by an ack, an update or a state change).
	suspect map[string]bool
	// onSuspect, when set, is called (under mu: it must not block) when a
	// member becomes suspect, to start the recheck (suspect.go).
	onSuspect func()
	// byUnderlay indexes the members by Meta.Underlay (underlay_index.go).
	byUnderlay underlayIndex
}

type memberEntry struct {
	peer  Peer
	since time.Time // last state change
}

func newMemberTable(self string, reapAfter time.Duration, now func() time.Time) *memberTable {
	if reapAfter <= 0 {
		reapAfter = DefaultReapAfter
	}
	if now == nil {
		now = time.Now
	}
	return &memberTable{self: self, reapAfter: reapAfter, now: now, m: make(map[string]*memberEntry),
		leaving: make(map[string]time.Time), suspect: make(map[string]bool)}
}

// addrFromIP converts a memberlist address (4- or 16-byte net.IP).
func addrFromIP(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

// set records name as being in state st with the given address and meta.
func (t *memberTable) set(name string, addr netip.Addr, port uint16, st State, meta Meta) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.suspect, name)
	e := t.m[name]
	if e == nil {
		e = &memberEntry{}
		t.m[name] = e
	}
	if e.peer.State != st || e.since.IsZero() {
		e.since = t.now()
	}
	t.byUnderlay.move(name, e.peer.Meta.Underlay, meta.Underlay)
	e.peer = Peer{Name: name, Addr: addr, Port: port, State: st, Meta: meta.clone()}
	if name != t.self {
		t.seenOther = true
	}
}

// gone marks name as left (it announced its own death, or its last meta
// said it was leaving) or failed. It returns the state recorded.
func (t *memberTable) gone(name string, addr netip.Addr, port uint16, meta Meta) State {
	st := StateFailed
	t.mu.Lock()
	at, announced := t.leaving[name]
	delete(t.leaving, name)
	t.mu.Unlock()
	if meta.Leaving || announced && t.now().Sub(at) < leaveMemory {
		st = StateLeft
	}
	t.set(name, addr, port, st, meta)
	return st
}

// list returns every member, sorted by name, after forgetting failed and
// left members older than reapAfter.
func (t *memberTable) list() []Peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	out := make([]Peer, 0, len(t.m))
	for name, e := range t.m {
		if !e.peer.State.Live() && now.Sub(e.since) > t.reapAfter {
			delete(t.m, name)
			t.byUnderlay.move(name, e.peer.Meta.Underlay, netip.Addr{})
			continue
		}
		p := e.peer
		p.Meta = p.Meta.clone()
		if p.State == StateAlive && t.suspect[name] {
			p.State = StateSuspect
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// get returns one member.
func (t *memberTable) get(name string) (Peer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[name]
	if !ok {
		return Peer{}, false
	}
	p := e.peer
	p.Meta = p.Meta.clone()
	return p, true
}

// numAlive counts live members, self included (at least 1).
func (t *memberTable) numAlive() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.m {
		if e.peer.State.Live() {
			n++
		}
	}
	return max(n, 1)
}

// underlayOwner returns the live member other than name whose Meta.Underlay
// is addr. An invalid addr has no owner.
func (t *memberTable) underlayOwner(addr netip.Addr, name string) (string, bool) {
	if !addr.IsValid() {
		return "", false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for n := range t.byUnderlay[addr] {
		e := t.m[n]
		if n == name || e == nil || !e.peer.State.Live() {
			continue
		}
		return n, true
	}
	return "", false
}

// sawOthers reports whether a member other than self was seen in this run.
func (t *memberTable) sawOthers() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seenOther
}
