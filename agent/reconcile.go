package agent

import (
	"context"
	"net/netip"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
)

// resyncInterval bounds how long a change nobody told us about (a route
// deleted by hand while the netlink watch was down) survives.
const resyncInterval = 10 * time.Second

// firstPassWait bounds how long the first pass waits for the join at start.
const firstPassWait = 5 * time.Second

// reconcileLoop runs the reconcile passes. Triggers: member and IPAM
// changes (poke), netlink events on our objects, and a periodic resync.
// Triggers coalesce: a burst of pokes runs one pass. It is not the only
// writer of the kernel (attach, detach, the flat restore and the teardown
// are others): all of them take the kernel lock.
func (a *Agent) reconcileLoop(ctx context.Context) {
	a.loopRunning.Store(true)
	defer a.loopRunning.Store(false)
	go a.plane.Watch(ctx, a.poke)
	tick := time.NewTicker(resyncInterval)
	defer tick.Stop()
	// A pass before the join at start would see no live peer and withdraw
	// every peer's routes (and WireGuard peers) that a restarted agent is
	// about to adopt: wait for the join, a few seconds at most.
	select {
	case <-ctx.Done():
		return
	case <-a.joined:
	case <-time.After(firstPassWait):
	}
	last := a.pass(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-tick.C:
		}
		// Let a burst of events settle so one pass covers them.
		select {
		case <-ctx.Done():
			return
		case <-time.After(settleAfter(last)):
		}
		last = a.pass(ctx)
	}
}

// Settling before a pass: at least settleMin, and as long as the last pass
// took (at most settleMax), so that passes take at most about half of the
// agent's time however fast member events come (a join storm of n hosts
// is n events on every host, each pass O(n): on a loaded machine a pass
// per event made the storm cost O(n^2) per host). On a quiet host a pass
// takes a few milliseconds and the settle stays settleMin.
const (
	settleMin = 20 * time.Millisecond
	settleMax = 250 * time.Millisecond
)

func settleAfter(lastPass time.Duration) time.Duration {
	return min(max(lastPass, settleMin), settleMax)
}

// pass runs one reconcile: snapshot, desired, apply; then the garbage
// collection of attachments whose namespace vanished. The snapshot is taken
// before the kernel lock; the kernel work holds it. It returns how long the
// pass took (the loop's settle follows it).
func (a *Agent) pass(ctx context.Context) time.Duration {
	start := time.Now()
	seq := a.passTaken()
	v := a.snapshot()
	a.passSnapshot(seq, v.InUse)
	var inUse []netip.Prefix // recorded for attach readiness if the pass succeeds
	defer func() { a.passDone(seq, inUse) }()
	unlock := a.lockKernel()
	err := a.plane.Reconcile(ctx, v)
	if err == nil {
		inUse = v.InUse
	}
	a.collectGarbage(ctx)
	unlock()
	now := time.Now()
	a.mu.Lock()
	changed := (err == nil) != (a.lastRec.err == nil)
	a.lastRec.at, a.lastRec.err = now, err
	if err == nil {
		a.lastRec.applied = now
	}
	a.mu.Unlock()
	if err != nil {
		a.log.Error("reconcile failed; retrying at the next pass", "error", err)
	} else if changed {
		a.log.Info("data plane in sync again")
	}
	a.notifyPass(err)
	a.metrics.pass(start, err)
	a.dnsPass(v)
	return time.Since(start)
}

// lastPass returns the record of the last pass.
func (a *Agent) lastPass() passRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastRec
}

// snapshot builds the view of this pass from the cluster and the allocator.
func (a *Agent) snapshot() view {
	v := view{Self: a.cl.Self(), Blocks: a.ipam.BlocksByOwner()}
	seen := map[netip.Prefix]bool{}
	for _, al := range a.ipam.Allocations() {
		if b := al.Prefix.Masked(); !seen[b] {
			seen[b] = true
			v.InUse = append(v.InUse, b)
		}
	}
	var names []string
	for _, p := range a.cl.AlivePeers() {
		names = append(names, p.Name)
		if p.Name != v.Self.Name && p.State.Live() {
			v.Alive = append(v.Alive, p)
		}
	}
	// The allocator asks live owners for space and names live heirs for
	// rmpeer; every pass (each member change pokes one) keeps it current.
	a.ipam.PeersChanged(names)
	return v
}

// passStatus fills the reconcile fields of a status answer.
func (a *Agent) passStatus(st *api.Status, now time.Time) {
	p := a.lastPass()
	if p.at.IsZero() {
		return // no pass yet
	}
	st.LastPass = p.at.UTC().Format(time.RFC3339)
	st.LastPassAge = now.Sub(p.at).Round(time.Second).String()
	if p.err != nil {
		st.LastPassError = p.err.Error()
	}
	if !p.applied.IsZero() {
		st.LastApplied = p.applied.UTC().Format(time.RFC3339)
	}
}
