package cluster

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestUnderlayOwnerFollowsTheTable(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := newMemberTable("self", time.Hour, func() time.Time { return now })
	u1, u2, u3 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	tb.set("a", u1, 1, StateAlive, Meta{Underlay: u1})
	tb.set("b", u2, 1, StateAlive, Meta{Underlay: u2})
	if o, ok := tb.underlayOwner(u1, "x"); !ok || o != "a" {
		t.Fatalf("owner of %s: %q %v, want a", u1, o, ok)
	}
	if _, ok := tb.underlayOwner(u1, "a"); ok {
		t.Fatal("a member owns its own underlay against itself")
	}
	tb.set("a", u3, 1, StateAlive, Meta{Underlay: u3}) // moved
	if o, ok := tb.underlayOwner(u1, "x"); ok {
		t.Fatalf("%s still owned by %q after a moved", u1, o)
	}
	if o, ok := tb.underlayOwner(u3, "x"); !ok || o != "a" {
		t.Fatalf("owner of %s: %q %v, want a", u3, o, ok)
	}
	tb.gone("a", u3, 1, Meta{Underlay: u3})
	if _, ok := tb.underlayOwner(u3, "x"); ok {
		t.Fatal("a failed member still owns its underlay")
	}
	now = now.Add(2 * time.Hour)
	tb.list() // reaps a
	if _, ok := tb.byUnderlay[u3]; ok {
		t.Fatal("the reaped member is still indexed")
	}
	if o, ok := tb.underlayOwner(u2, "x"); !ok || o != "b" {
		t.Fatalf("owner of %s: %q %v, want b", u2, o, ok)
	}
}

// BenchmarkCheckMerge is the refusal check of a push-pull merge of an
// n-host member list (every node checked against the table of n members).
// ns/node staying flat from 100 to 2000 hosts shows it is linear.
func BenchmarkCheckMerge(b *testing.B) {
	for _, n := range []int{100, 500, 2000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			local := Meta{Mode: "vxlan", Cluster: "c", Fingerprint: 1}
			tb := newMemberTable("self", time.Hour, nil)
			r := newRefuser("self", func() Meta { return local }, tb, nil)
			var nodes []*memberlist.Node
			for i := 0; i < n; i++ {
				m := local
				m.Underlay = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
				m.SignKey[0] = 1
				name := fmt.Sprintf("h%d", i)
				tb.set(name, m.Underlay, 1, StateAlive, m)
				enc, err := m.Encode()
				if err != nil {
					b.Fatal(err)
				}
				nodes = append(nodes, &memberlist.Node{Name: name, Meta: enc, State: memberlist.StateAlive})
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := r.checkMerge(nodes); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/node")
		})
	}
}
