package agent

import (
	"context"
	"net/netip"
	"time"

	"github.com/flatmesh/flatmesh/cluster"
)

// resyncInterval bounds how long a change nobody told us about (a route
// deleted by hand while the netlink watch was down) survives.
const resyncInterval = 10 * time.Second

// reconcileLoop is the one goroutine that programs the data plane. Triggers:
// member and IPAM changes (poke), netlink events on our objects, and a
// periodic resync. Triggers coalesce: a burst of pokes runs one pass.
func (a *Agent) reconcileLoop(ctx context.Context) {
	go a.plane.Watch(ctx, a.poke)
	tick := time.NewTicker(resyncInterval)
	defer tick.Stop()
	a.pass(ctx)
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
		case <-time.After(20 * time.Millisecond):
		}
		a.pass(ctx)
	}
}

// pass runs one reconcile: snapshot, desired, apply; then the garbage
// collection of attachments whose namespace vanished.
func (a *Agent) pass(ctx context.Context) {
	v := a.snapshot()
	err := a.plane.Reconcile(ctx, v)
	a.mu.Lock()
	changed := (err == nil) != (a.lastErr == nil)
	a.lastErr = err
	if err == nil {
		a.lastApplied = time.Now()
	}
	a.mu.Unlock()
	if err != nil {
		a.log.Error("reconcile failed; retrying at the next pass", "error", err)
	} else if changed {
		a.log.Info("data plane in sync again")
	}
	a.collectGarbage(ctx)
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
		if p.Name != v.Self.Name && (p.State == cluster.StateAlive || p.State == cluster.StateSuspect) {
			v.Alive = append(v.Alive, p)
		}
	}
	// The allocator asks live owners for space and names live heirs for
	// rmpeer; every pass (each member change pokes one) keeps it current.
	a.ipam.PeersChanged(names)
	return v
}
