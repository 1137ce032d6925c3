package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flatmesh/flatmesh/agent/firewall"
)

// removeRules removes both sets of chains (leave --purge).
func removeRules(o firewall.Options) error {
	return errors.Join(firewall.Remove(o), firewall.RemoveNoTrack(o))
}

// firewallGate programs a plane's rules (forwarding, NAT, tunnel ports,
// notrack) through a settleGate: at once when they were never written and
// when the recheck interval passed (someone may have flushed them); other
// changes of the rules at most once per settle period. Members are not in
// the rules but in the firewall's member set: every change of them is
// synced at once (a netlink request per address, no table read), so a
// join storm or a departure costs no rule rewrite and a new member's
// tunnel packets are let in without delay. Safe for concurrent use.
type firewallGate struct {
	gate settleGate             // zero value: the firewall's settle and recheck periods
	wake atomic.Pointer[func()] // wakes the reconcile loop for a delayed write
	// changes counts nftables ruleset changes seen by watch (another
	// program's, or ours); watching says the watch runs, so chains that
	// change nothing may be left out (firewall.Options.OnlyWhenNeeded):
	// a later change, Docker's FORWARD DROP say, brings them back within
	// rulesetSettle.
	changes  atomic.Uint64
	watching atomic.Bool

	mu          sync.Mutex
	members     map[netip.Addr]bool // in the member set since the last sync
	readGen     uint64              // changes when the tables were last read
	readAt      time.Time
	pendingRead *time.Timer
}

// rulesetSettle is the least time between two reads of the tables caused by
// ruleset changes (Docker starting containers changes it many times).
const rulesetSettle = 250 * time.Millisecond

// setWake gives the gate the plane's poke (the plane's Watch has it).
func (g *firewallGate) setWake(wake func()) { g.wake.Store(&wake) }

// watch is setWake plus a watch of the ruleset (until ctx ends): every
// change by anyone makes the next pass re-read the tables (at most once per
// settle period), and while the watch runs only the chains that change
// something are installed. Without it (setWake alone) every chain is.
func (g *firewallGate) watch(ctx context.Context, log hclog.Logger, wake func()) {
	g.setWake(wake)
	err := firewall.WatchChanges(ctx, "", func() {
		g.changes.Add(1)
		wake()
	})
	if err != nil {
		log.Warn("not watching the firewall for changes: installing every chain", "error", err)
		return
	}
	g.watching.Store(true)
	context.AfterFunc(ctx, func() { g.watching.Store(false) })
}

func (g *firewallGate) ensure(o firewall.Options, tunnelPort int) error {
	slices.SortFunc(o.NoNAT, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	o.OnlyWhenNeeded = g.watching.Load()
	key := fmt.Sprint(o.ClusterCIDRs, o.NoNAT, o.Masquerade, o.TunnelPorts, o.Direct, o.OnlyWhenNeeded, o.TunnelLocal)
	var wake func()
	if w := g.wake.Load(); w != nil {
		wake = *w
	}
	gen := g.changes.Load()
	if !g.rulesetChanged(gen, time.Now(), wake) && !g.gate.due(key, time.Now(), wake) {
		if len(o.TunnelPorts) > 0 && g.membersDiffer(o.Members) {
			if err := firewall.SyncMembers(o); err != nil {
				return fmt.Errorf("updating the firewall's member set: %w", err)
			}
			g.synced(o.Members)
		}
		return nil
	}
	// EnsureAll syncs the member set first, as SyncMembers would.
	if err := firewall.EnsureAll(o, tunnelPort); err != nil {
		return fmt.Errorf("programming forwarding rules: %w", err)
	}
	g.gate.written(key, time.Now())
	g.synced(o.Members)
	g.mu.Lock()
	g.readGen, g.readAt = gen, time.Now()
	g.mu.Unlock()
	return nil
}

// synced records members as the member set's contents.
func (g *firewallGate) synced(members []netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.members = make(map[netip.Addr]bool, len(members))
	for _, m := range members {
		g.members[m] = true
	}
}

// rulesetChanged reports whether the ruleset changed (generation gen)
// since the tables were last read and that read is rulesetSettle old; a
// change seen sooner calls wake once that time has passed.
func (g *firewallGate) rulesetChanged(gen uint64, now time.Time, wake func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gen == g.readGen {
		return false
	}
	wait := rulesetSettle - now.Sub(g.readAt)
	if wait <= 0 {
		return true
	}
	if g.pendingRead == nil && wake != nil {
		g.pendingRead = time.AfterFunc(wait, func() {
			g.mu.Lock()
			g.pendingRead = nil
			g.mu.Unlock()
			wake()
		})
	}
	return false
}

// membersDiffer reports whether members differs from the member set as
// last synced (always before the first sync).
func (g *firewallGate) membersDiffer(members []netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.members == nil {
		return true
	}
	want := make(map[netip.Addr]bool, len(members))
	for _, m := range members {
		if !g.members[m] {
			return true
		}
		want[m] = true
	}
	return len(want) != len(g.members)
}
