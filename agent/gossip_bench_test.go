package agent

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/ipam"
	"github.com/hashicorp/go-hclog"
)

// gossipNode is an agent reduced to its gossip glue: a real memberlist on
// loopback and a real allocator, wired exactly as Run wires them.
func gossipNode(b testing.TB, name string, seed bool) *Agent {
	b.Helper()
	a := &Agent{log: hclog.NewNullLogger(), kick: make(chan struct{}, 1), metaKick: make(chan struct{}, 1), done: make(chan struct{})}
	var err error
	a.ipam, err = ipam.Open(ipam.Options{
		Self:      name,
		Config:    ipam.Config{CIDR: netip.MustParsePrefix("10.213.0.0/16"), BlockBits: 26, GatewayPerBlock: true},
		StateDir:  b.TempDir(),
		Seed:      seed,
		Transport: &transport{a: a},
	})
	if err != nil {
		b.Fatal(err)
	}
	a.cl, err = cluster.New(cluster.Config{
		Name: name, Bind: netip.MustParseAddrPort("127.0.0.1:0"),
		Meta:     cluster.Meta{Mode: "vxlan", Cluster: "bench", Underlay: netip.MustParseAddr("192.0.2." + name[1:])},
		Insecure: true, App: newGossip(a), Timing: cluster.TimingLocal,
	})
	if err != nil {
		b.Fatal(err)
	}
	a.clRef.Store(a.cl)
	b.Cleanup(func() { _ = a.cl.Shutdown(); close(a.done) })
	return a
}

// BenchmarkFirstBlockFromPeer measures the time from a new host joining to
// its first address, which needs a block donated by the seed host over real
// memberlist (loopback, the lab's gossip timing).
func BenchmarkFirstBlockFromPeer(b *testing.B) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		seedHost := gossipNode(b, "h1", true)
		if _, err := seedHost.ipam.Allocate(context.Background(), ipam.Request{ID: "warm", IfName: "eth0"}); err != nil {
			b.Fatal(err)
		}
		joiner := gossipNode(b, "h2", false)
		b.StartTimer()
		start := time.Now()
		if _, err := joiner.cl.Join([]string{netip.AddrPortFrom(seedHost.cl.Self().Addr, seedHost.cl.Self().Port).String()}); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		al, err := joiner.ipam.Allocate(ctx, ipam.Request{ID: "c1", IfName: "eth0"})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if joiner.ipam.OwnedBlocks("h2") == nil || !al.Prefix.IsValid() {
			b.Fatalf("joiner got %v without owning a block", al)
		}
		_ = joiner.cl.Shutdown()
		_ = seedHost.cl.Shutdown()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/first-block")
}
