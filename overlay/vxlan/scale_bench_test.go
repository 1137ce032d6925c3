package vxlan

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/overlay"
)

// simCluster is n hosts as a reconcile pass sees them: host i has underlay
// 10.64.i/8-ish and owns /26 block i of 10.128.0.0/10; host 0 (self) also
// owns every block from n up to the end of the first /16, as the first host
// does until it donates them (aggregation folds those into a few routes).
func simCluster(n int) (Node, []Node) {
	base := netip.MustParseAddr("10.128.0.0").As4()
	block := func(i int) netip.Prefix {
		v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(i)<<6
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 26)
	}
	under := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{10, 64, byte(i >> 8), byte(i)})
	}
	self := Node{Name: "h0000", Underlay: under(0), Blocks: []netip.Prefix{block(0)}}
	var peers []Node
	for i := 1; i < n; i++ {
		u := under(i)
		peers = append(peers, Node{Name: fmt.Sprintf("h%04d", i), Underlay: u, VTEPMAC: VTEPMAC(u),
			Blocks: overlay.Aggregate([]netip.Prefix{block(i)})})
	}
	// The first peer still owns the unused tail of the first /16.
	var tail []netip.Prefix
	for i := n; i < 1024; i++ {
		tail = append(tail, block(i))
	}
	if len(peers) > 0 {
		peers[0].Blocks = overlay.Aggregate(append(peers[0].Blocks, tail...))
	}
	return self, peers
}

// BenchmarkDesiredHosts is the pure part of one reconcile pass on a host of
// an n-host cluster: Desired from every peer, then the diff against a
// kernel that already matches (the steady state of a periodic resync). It
// reports the kernel objects per host (routes, neighbours, FDB entries);
// ns/op across sizes shows how a pass grows with the cluster.
func BenchmarkDesiredHosts(b *testing.B) {
	for _, n := range []int{250, 1000, 4000} {
		self, peers := simCluster(n)
		opts := Options{MTU: 1450}
		st, err := Desired(self, peers, opts)
		if err != nil {
			b.Fatal(err)
		}
		if len(st.Skipped) > 0 {
			b.Fatalf("skipped: %v", st.Skipped[:1])
		}
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				st, _ := Desired(self, peers, opts)
				if p := kernel.Diff(st.Objects, st.Objects); !p.Empty() {
					b.Fatal("steady state plans changes")
				}
			}
			b.ReportMetric(float64(len(st.Objects.Routes)), "routes/host")
			b.ReportMetric(float64(st.Objects.Len()), "objects/host")
		})
	}
}
