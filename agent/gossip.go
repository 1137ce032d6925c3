package agent

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/ipam"
)

// inboxSize bounds the IPAM messages waiting for the worker. When it is full
// a message is dropped (and counted): broadcasts are relayed by others and
// push-pull repairs any loss, while an unbounded queue would let a flood
// grow the agent's memory.
const inboxSize = 1024

// batchMax is how many queued messages the worker hands the allocator at
// once (one save for all of them).
const batchMax = 128

// gossip connects the cluster's application channel to the allocator. Its
// AppDelegate methods are memberlist callbacks: they copy the message into
// a bounded queue and return; a worker goroutine merges queued messages in
// batches (the allocator fsyncs there, never on memberlist's goroutines).
// LocalState reads the allocator's cached state without waiting for a save.
type gossip struct {
	a       *Agent
	inbox   chan ipam.Message
	mu      sync.Mutex
	dropped int
}

var _ cluster.AppDelegate = (*gossip)(nil)

// newGossip returns the glue and starts its worker, which runs until the
// agent shuts down (a.done).
func newGossip(a *Agent) *gossip {
	g := &gossip{a: a, inbox: make(chan ipam.Message, inboxSize)}
	go g.work(a.done)
	return g
}

func (g *gossip) enqueue(m ipam.Message) {
	select {
	case g.inbox <- m:
	default:
		g.mu.Lock()
		g.dropped++
		n := g.dropped
		g.mu.Unlock()
		if n == 1 || n%1000 == 0 {
			g.a.log.Warn("IPAM message queue full: dropping messages (push-pull repairs them)", "dropped", n)
		}
	}
}

func (g *gossip) HandleBroadcast(origin string, payload []byte) {
	if g.a.handleNames(origin, payload) { // names: in memory, no disk
		return
	}
	g.enqueue(ipam.Message{From: origin, Payload: payload})
}

func (g *gossip) HandleDirect(from string, payload []byte) {
	if g.a.handleNames(from, payload) {
		return
	}
	g.enqueue(ipam.Message{From: from, Payload: payload})
}

func (g *gossip) LocalState(join bool) []byte { return g.a.namesPushPull(g.a.ipam.LocalState()) }

// MergeRemoteState queues the state of peer from (authenticated by the
// cluster's signature check, so the allocator's sender rules apply to
// push-pull too). memberlist may reuse buf after the call, so it is copied.
func (g *gossip) MergeRemoteState(from string, buf []byte, join bool) {
	buf, err := g.a.splitNamesPushPull(from, buf)
	if err != nil {
		g.a.log.Warn("ignoring a peer's IPAM state", "from", from, "error", err)
		return
	}
	g.enqueue(ipam.Message{From: from, Payload: append([]byte(nil), buf...), State: true})
}

func (g *gossip) CheckMerge(remote []cluster.Peer) error {
	for _, p := range remote {
		if err := g.a.ipam.CheckMerge(p.Meta.IPAMSeed, p.Meta.IPAMUsed, p.Name); err != nil {
			return err
		}
	}
	return nil
}

// work merges queued messages in batches until done closes. The allocator
// calls OnChange (afterIPAMChange) when a batch changed something.
func (g *gossip) work(done <-chan struct{}) {
	for {
		var m ipam.Message
		select {
		case <-done:
			return
		case m = <-g.inbox:
		}
		batch := []ipam.Message{m}
	drain:
		for len(batch) < batchMax {
			select {
			case m = <-g.inbox:
				batch = append(batch, m)
			default:
				break drain
			}
		}
		if err := g.a.ipam.HandleMessages(batch); err != nil {
			g.a.log.Warn("ignoring part of the peers' IPAM state", "error", err)
		}
	}
}

// sendQueueSize bounds the direct messages waiting for one peer.
const sendQueueSize = 64

// sendIdle is how long a peer's sender goroutine lingers without work.
const sendIdle = 30 * time.Second

// transport lets the allocator send through the cluster. The cluster is
// created after the allocator, so it is looked up at send time. Direct
// messages go through one queue (and one goroutine, while it has work) per
// peer, so a slow or dead peer delays only its own messages and a burst
// never starts a goroutine per message.
type transport struct {
	a      *Agent
	mu     sync.Mutex
	queues map[string]chan []byte
}

var _ ipam.Transport = (*transport)(nil)

func (t *transport) Broadcast(payload []byte) {
	if cl := t.a.clRef.Load(); cl != nil {
		cl.Broadcast(payload)
	}
}

// SendTo queues the message for peer and returns at once; a full queue
// drops it (the allocator's request timer retries). A lost message is
// retried by the allocator's own request timer.
func (t *transport) SendTo(peer string, payload []byte) error {
	cl := t.a.clRef.Load()
	if cl == nil {
		return errNotStarted
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	q, ok := t.queues[peer]
	if !ok {
		if t.queues == nil {
			t.queues = map[string]chan []byte{}
		}
		q = make(chan []byte, sendQueueSize)
		t.queues[peer] = q
		go t.sender(cl, peer, q)
	}
	select {
	case q <- payload:
		return nil
	default:
		return errors.New("the send queue to " + peer + " is full")
	}
}

// sender delivers one peer's queue in order and ends after sendIdle
// without work (removing its queue under the lock, so no message is left
// behind in a queue nobody reads).
func (t *transport) sender(cl *cluster.Cluster, peer string, q chan []byte) {
	idle := time.NewTimer(sendIdle)
	defer idle.Stop()
	for {
		select {
		case p := <-q:
			if err := cl.SendTo(peer, p); err != nil {
				t.a.log.Debug("sending to a peer failed", "peer", peer, "error", err)
			}
			idle.Reset(sendIdle)
		case <-idle.C:
			t.mu.Lock()
			if len(q) == 0 {
				delete(t.queues, peer)
				t.mu.Unlock()
				return
			}
			t.mu.Unlock()
			idle.Reset(sendIdle)
		case <-t.a.done:
			return
		}
	}
}

// afterIPAMChange wakes the metadata sync (our node metadata carries the
// IPAM seed, "used" flag and ownership digest) and the reconcile loop
// (routes follow block ownership). The allocator calls it (OnChange) only
// when its map or allocations changed. It never blocks.
func (a *Agent) afterIPAMChange() {
	select {
	case a.metaKick <- struct{}{}:
	default:
	}
	a.poke()
}

// isMember reports whether name is a live (or suspect) member: the
// allocator accepts IPAM state only from members.
func (a *Agent) isMember(name string) bool {
	cl := a.clRef.Load()
	return cl != nil && cl.IsLive(name)
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
