package agent

import (
	"context"
	"errors"

	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/ipam"
)

// gossip connects the cluster's application channel to the allocator. Its
// methods are memberlist callbacks: they never wait on the network or on
// another goroutine's long work (sends are queued, see transport), but they
// are not free: when a message changes block ownership, the allocator
// saves its state file before returning (a write and an fsync).
type gossip struct{ a *Agent }

var _ cluster.AppDelegate = (*gossip)(nil)

func (g *gossip) HandleBroadcast(origin string, payload []byte) {
	if g.a.handleNames(origin, payload) {
		return
	}
	g.a.ipam.HandleMessage(origin, payload)
	g.a.afterIPAMChange()
}

func (g *gossip) HandleDirect(from string, payload []byte) {
	if g.a.handleNames(from, payload) {
		return
	}
	g.a.ipam.HandleMessage(from, payload)
	g.a.afterIPAMChange()
}

func (g *gossip) LocalState(join bool) []byte { return g.a.namesPushPull(g.a.ipam.LocalState()) }

func (g *gossip) MergeRemoteState(buf []byte, join bool) {
	buf, err := g.a.splitNamesPushPull(buf)
	if err == nil {
		err = g.a.ipam.MergeRemoteState(buf)
	}
	if err != nil {
		g.a.log.Warn("ignoring a peer's IPAM state", "error", err)
		return
	}
	g.a.afterIPAMChange()
}

func (g *gossip) CheckMerge(remote []cluster.Peer) error {
	for _, p := range remote {
		if err := g.a.ipam.CheckMerge(p.Meta.IPAMSeed, p.Meta.IPAMUsed, p.Name); err != nil {
			return err
		}
	}
	return nil
}

// transport lets the allocator send through the cluster. The cluster is
// created after the allocator, so it is looked up at send time.
type transport struct{ a *Agent }

var _ ipam.Transport = (*transport)(nil)

func (t *transport) Broadcast(payload []byte) {
	if cl := t.a.clRef.Load(); cl != nil {
		cl.Broadcast(payload)
	}
}

// SendTo queues the message and returns at once: the allocator calls it
// from memberlist callbacks, which must not wait on a TCP connection. A
// lost message is retried by the allocator's own request timer.
func (t *transport) SendTo(peer string, payload []byte) error {
	cl := t.a.clRef.Load()
	if cl == nil {
		return errNotStarted
	}
	go func() {
		if err := cl.SendTo(peer, payload); err != nil {
			t.a.log.Debug("sending to a peer failed", "peer", peer, "error", err)
		}
	}()
	return nil
}

// afterIPAMChange wakes the metadata sync (our node metadata carries the
// IPAM seed, "used" flag and ownership digest) and the reconcile loop
// (routes follow block ownership). It never blocks: it runs in memberlist
// callbacks.
func (a *Agent) afterIPAMChange() {
	select {
	case a.metaKick <- struct{}{}:
	default:
	}
	a.poke()
}

// metaLoop publishes the IPAM fields of our metadata whenever they change.
// One goroutine, so an older value never overwrites a newer one.
func (a *Agent) metaLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.metaKick:
		}
		seed, used, digest := a.ipam.SeedID(), a.ipam.Used(), a.ipam.DigestValue()
		self := a.cl.Self().Meta
		if self.IPAMSeed == seed && self.IPAMUsed == used && self.IPAMDigest == digest {
			continue
		}
		if err := a.cl.UpdateMeta(func(m *cluster.Meta) { m.IPAMSeed, m.IPAMUsed, m.IPAMDigest = seed, used, digest }); err != nil {
			a.log.Warn("updating node metadata", "error", err)
		}
	}
}

var errNotStarted = errors.New("the cluster is not started yet")
