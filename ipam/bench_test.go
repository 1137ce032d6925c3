package ipam

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkAllocate measures local allocations per second on a host that
// keeps about 100 containers (allocate one, release the oldest), each
// change persisted as in production ("fsync"), without fsync, and in
// memory only (the allocator's own cost).
func BenchmarkAllocate(b *testing.B) {
	for _, mode := range []string{"fsync", "nosync", "memory"} {
		b.Run(mode, func(b *testing.B) {
			opts := Options{Self: "h1", Seed: true, Cooldown: -1,
				Config: Config{CIDR: netip.MustParsePrefix("10.213.0.0/16"), BlockBits: 26, GatewayPerBlock: true}}
			if mode != "memory" {
				opts.StateDir = b.TempDir()
			}
			opts.noSync = mode == "nosync"
			a, err := Open(opts)
			if err != nil {
				b.Fatal(err)
			}
			const keep = 100
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := a.Allocate(bg, Request{ID: fmt.Sprint(i), IfName: "eth0"}); err != nil {
					b.Fatal(err)
				}
				if i >= keep {
					if err := a.Release(fmt.Sprint(i-keep), "eth0"); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "allocs/s")
		})
	}
}

// bigView builds the map of a cluster of n hosts in a /16 of /26 blocks:
// the seed keeps what it did not give, every other host owns one block,
// uses 20 addresses of it and names three heirs.
func bigView(b *testing.B, n int) *Allocator {
	a, err := Open(Options{Self: "worker-0000.dc1", Seed: true,
		Config: Config{CIDR: netip.MustParsePrefix("10.213.0.0/16"), BlockBits: 26, GatewayPerBlock: true}})
	if err != nil {
		b.Fatal(err)
	}
	id := func(i int) ident { return ident{fmt.Sprintf("worker-%04d.dc1", i%n), 1767225600 + uint32(i%n)} }
	for i := 1; i < n; i++ {
		blk := uint32(a.sp.nBlocks - i)
		a.v.blocks[blk] = entry{Ver: 2, Owner: id(i)}
		a.v.hosts[id(i)] = hostRec{Ver: 40, Used: true, Heirs: []ident{id(i + 1), id(i + 2), id(i + 3)},
			Use: map[uint32]uint32{blk: 20}}
	}
	a.gen++
	return a
}

// BenchmarkGossipState reports the size of the push-pull state at 1,000
// hosts and what encoding and merging it costs.
func BenchmarkGossipState(b *testing.B) {
	a := bigView(b, 1000)
	state := a.LocalState()
	b.Run("encode", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			a.gen++ // defeat the cache
			state = a.LocalState()
		}
		b.ReportMetric(float64(len(state)), "bytes")
	})
	b.Run("merge", func(b *testing.B) {
		c, err := Open(Options{Self: "worker-0001.dc1",
			Config: Config{CIDR: netip.MustParsePrefix("10.213.0.0/16"), BlockBits: 26, GatewayPerBlock: true}})
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < b.N; i++ {
			c.merged = map[uint64]bool{} // defeat the repeat check
			if err := c.MergeRemoteState(a.self.Name, state); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(state)), "bytes")
	})
}

// BenchmarkFirstBlock measures the allocator's side of a new host's first
// address: state adoption, request, donation, merge, allocation, over an
// in-memory transport (the network's share is measured with memberlist
// by the agent's tests).
func BenchmarkFirstBlock(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c, bs := newClock(), newBus()
		bs.open(b, "h1", c, hostOpts{seed: true})
		h2 := bs.open(b, "h2", c, hostOpts{})
		b.StartTimer()
		_ = h2.MergeRemoteState("h1", bs.nodes["h1"].LocalState())
		if _, err := bs.alloc(b, h2, c, Request{ID: "x"}); err != nil {
			b.Fatal(err)
		}
	}
}
