package agent

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/ipam"
)

// gossipNode is an agent reduced to its gossip glue: a real memberlist on
// loopback and a real allocator, wired exactly as Run wires them (see
// newTestNode).
func gossipNode(b testing.TB, name string, seed bool) *Agent {
	b.Helper()
	n, _ := strconv.Atoi(name[1:])
	return newTestNode(b, name, n, seed, overlayCaps).a
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
