package agent

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/ipam"
	"github.com/hashicorp/go-hclog"
)

// The memberlist callbacks only queue: they return at once even with
// nobody working the queue, drop (and count) what does not fit, and keep
// their own copy of a push-pull buffer that memberlist may reuse.
func TestGossipCallbacksOnlyQueue(t *testing.T) {
	a := &Agent{log: hclog.NewNullLogger()}
	g := &gossip{a: a, inbox: make(chan ipam.Message, 2)} // no worker
	done := make(chan struct{})
	go func() {
		g.HandleBroadcast("h2", []byte{1})
		buf := []byte{7, 7}
		g.MergeRemoteState("h4", buf, false)
		buf[0] = 9
		g.HandleDirect("h3", []byte{3}) // queue full: dropped
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a callback blocked")
	}
	if g.dropped != 1 || len(g.inbox) != 2 {
		t.Fatalf("dropped %d, queued %d; want 1 and 2", g.dropped, len(g.inbox))
	}
	<-g.inbox
	if m := <-g.inbox; !m.State || !bytes.Equal(m.Payload, []byte{7, 7}) || m.From != "h4" {
		t.Errorf("queued push-pull state %+v, want a copy of [7 7]", m)
	}
}

// Two agents' gossip glue over real memberlist on loopback: the joiner's
// first address needs a block the seed host donates, which only works if
// the worker merges the queued messages and the per-peer send queue
// delivers the request and the donation.
func TestGossipWorkerAndSendQueues(t *testing.T) {
	seedHost := gossipNode(t, "h1", true)
	if _, err := seedHost.ipam.Allocate(context.Background(), ipam.Request{ID: "warm", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	joiner := gossipNode(t, "h2", false)
	if _, err := joiner.cl.Join([]string{netip.AddrPortFrom(seedHost.cl.Self().Addr, seedHost.cl.Self().Port).String()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	al, err := joiner.ipam.Allocate(ctx, ipam.Request{ID: "c1", IfName: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(joiner.ipam.OwnedBlocks("h2")) == 0 || !al.Prefix.IsValid() {
		t.Fatalf("joiner got %v without owning a block", al)
	}
}
