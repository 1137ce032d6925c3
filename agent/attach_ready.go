package agent

import (
	"context"
	"net/netip"
	"slices"
	"time"
)

// An attach answers only once the container can reach its peers (a
// container told it is attached pings at once; the first ping used to be
// lost while its block's gateway was not yet on our bridge, or the other
// hosts had no route to the block yet). In the overlays that is two waits:
//   - a reconcile pass whose snapshot was taken after the allocation (it
//     puts the block's gateway on the bridge);
//   - every live peer's view of block ownership agreeing with ours (their
//     gossiped IPAM digest), after which their next pass routes the block.
// Both are bounded: a slow or diverging peer delays an attach by at most
// readyPeersWait, and an attach never fails for it.

// readyPassWait bounds the wait for the local pass.
const readyPassWait = 2 * time.Second

// readyPeersWait bounds the wait for the peers' views.
const readyPeersWait = time.Second

// passTracker counts snapshots and finished passes (under Agent.mu).
type passTracker struct {
	taken uint64 // snapshots taken
	done  uint64 // the snapshot number of the last finished pass
	// inUse: the blocks in use in the last finished pass's snapshot when
	// that pass succeeded (their gateways are on the bridge), else nil.
	inUse []netip.Prefix
	// running: the blocks in use in the snapshot of the pass under way
	// (nil until that snapshot is taken).
	running []netip.Prefix
}

// passTaken records a snapshot and returns its number.
func (a *Agent) passTaken() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.passes.taken++
	a.passes.running = nil
	return a.passes.taken
}

// passSnapshot records the blocks in use in the snapshot of pass seq.
func (a *Agent) passSnapshot(seq uint64, inUse []netip.Prefix) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if seq == a.passes.taken {
		a.passes.running = inUse
	}
}

// passDone records the end of the pass of snapshot seq (inUse: its
// snapshot's blocks in use if it succeeded, else nil).
func (a *Agent) passDone(seq uint64, inUse []netip.Prefix) {
	a.mu.Lock()
	if seq > a.passes.done {
		a.passes.done, a.passes.inUse = seq, inUse
	}
	a.mu.Unlock()
	a.passEnded.fire()
}

// awaitReady waits (bounded) until a container just plugged in can reach
// its peers; it returns early when ctx ends. Without a running reconcile
// loop (unit tests of the handlers) there is nothing to wait for.
func (a *Agent) awaitReady(ctx context.Context, block netip.Prefix) {
	if !a.plane.Capabilities().GatewayPerBlock || !a.loopRunning.Load() {
		return
	}
	if !a.gatewayInPlace(block) {
		a.awaitPass(ctx)
	}
	a.awaitPeersAgree(ctx)
}

// gatewayInPlace: the last pass succeeded with block in use, so the block's
// gateway is on the bridge, and it stays there: no pass is under way, or
// the one under way has the block in use too (a snapshot taken before a
// detach emptied the block, and this attach refilled it, would take the
// gateway away). Every later snapshot sees this allocation. A second
// container in a block then answers without waiting for a pass; waiting
// whenever a pass was under way cost every third attach of a series a
// pass and a settle (p99 34 ms against p50 10 ms).
func (a *Agent) gatewayInPlace(block netip.Prefix) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !slices.Contains(a.passes.inUse, block) {
		return false
	}
	return a.passes.taken == a.passes.done || slices.Contains(a.passes.running, block)
}

// awaitFirstPass waits (bounded) for the agent's first reconcile pass, which
// builds the bridge containers are plugged into: right after start the
// first pass waits for the join (firstPassWait), and an attach then (the
// lab attaches as soon as the members see each other) found no bridge.
// Without a reconcile loop (unit tests of the handlers) it returns at once.
func (a *Agent) awaitFirstPass(ctx context.Context) {
	if !a.loopRunning.Load() {
		return
	}
	if !a.awaitPassDone(ctx, 1, firstPassWait+readyPassWait) {
		a.log.Warn("attach: the first reconcile pass has not finished; plugging in anyway")
	}
}

// awaitPass pokes the loop and waits for a pass whose snapshot comes after
// this call.
func (a *Agent) awaitPass(ctx context.Context) {
	a.mu.Lock()
	target := a.passes.taken + 1
	a.mu.Unlock()
	a.poke()
	if !a.awaitPassDone(ctx, target, readyPassWait) {
		a.metrics.readyTimeout("pass")
		a.log.Debug("attach: no reconcile pass in time; answering anyway")
	}
}

// awaitPassDone waits until the pass of snapshot target (or a later one)
// has finished; false when wait ran out first (an ended ctx counts as done:
// the caller's request is over anyway).
func (a *Agent) awaitPassDone(ctx context.Context, target uint64, wait time.Duration) bool {
	return a.passEnded.until(ctx, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.passes.done >= target
	}, wait, wait) // every finished pass fires: no recheck needed
}

// awaitPeersAgree waits until every live peer gossips our IPAM digest.
func (a *Agent) awaitPeersAgree(ctx context.Context) {
	if !a.changed.until(ctx, a.peersAgree, readyPeersWait, peersAgreeRecheck) {
		a.metrics.readyTimeout("peers")
		a.log.Debug("attach: peers' views of the blocks still differ; answering anyway")
	}
}

// peersAgreeRecheck is awaitPeersAgree's look without a change (a
// safety net: every change that can make the peers agree pokes the agent,
// which wakes the wait at once; it used to poll every 10 ms).
const peersAgreeRecheck = 100 * time.Millisecond

// peersAgree reports whether every live peer's gossiped IPAM digest is ours.
func (a *Agent) peersAgree() bool {
	cl := a.clRef.Load()
	if cl == nil {
		return true
	}
	ours, self := a.ipam.DigestValue(), cl.Self().Name
	for _, p := range cl.AlivePeers() {
		if p.Name != self && p.Meta.IPAMDigest != ours {
			return false
		}
	}
	return true
}
