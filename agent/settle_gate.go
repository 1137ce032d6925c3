package agent

import (
	"cmp"
	"sync"
	"time"
)

// firewallSettle is the least time between two firewall rewrites caused by
// a changed input (in practice the member underlay addresses exempt from
// NAT). Each rewrite runs iptables-save and iptables-restore; during a join
// storm every member event changed that list, so every host rewrote its
// rules once per member (50 hosts: 49 rewrites each, the same again for
// every flap), and the CPU it took starved memberlist's probes on small
// machines. Now a burst of changes costs a rewrite per settle period; the
// last change is written when the period ends (a delayed pass), so a new
// member's underlay is NATed at most this long.
const firewallSettle = 2 * time.Second

// firewallRecheck bounds how long a rule removed behind our back (a
// firewall reload) stays missing.
const firewallRecheck = 30 * time.Second

// settleGate decides when the firewall is programmed: at once the first
// time and after recheck passed with unchanged inputs (someone may have
// flushed our rules); with changed inputs at once if the last write is at
// least settle old, else once settle has passed (it calls wake then, so a
// pass runs). Safe for concurrent use.
type settleGate struct {
	settle, recheck time.Duration // zero: firewallSettle, firewallRecheck

	mu      sync.Mutex
	last    string    // key of the last successful write
	at      time.Time // when it was made
	pending *time.Timer
}

// due reports whether to write the firewall for key now.
func (g *settleGate) due(key string, now time.Time, wake func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	settle, recheck := cmp.Or(g.settle, firewallSettle), cmp.Or(g.recheck, firewallRecheck)
	switch {
	case g.at.IsZero():
		return true
	case key == g.last:
		return now.Sub(g.at) >= recheck
	case now.Sub(g.at) >= settle:
		return true
	}
	if g.pending == nil && wake != nil {
		g.pending = time.AfterFunc(settle-now.Sub(g.at), func() {
			g.mu.Lock()
			g.pending = nil
			g.mu.Unlock()
			wake()
		})
	}
	return false
}

// written records a successful write of key at now.
func (g *settleGate) written(key string, now time.Time) {
	g.mu.Lock()
	g.last, g.at = key, now
	g.mu.Unlock()
}
