package overlay

import (
	"fmt"
	"math/rand"
	"net/netip"
	"testing"
)

func TestAggregate(t *testing.T) {
	p := netip.MustParsePrefix
	cases := []struct {
		in   []netip.Prefix
		want string
	}{
		{nil, "[]"},
		{[]netip.Prefix{p("10.0.0.0/26"), p("10.0.0.64/26")}, "[10.0.0.0/25]"},
		{[]netip.Prefix{p("10.0.0.64/26"), p("10.0.0.128/26")}, "[10.0.0.64/26 10.0.0.128/26]"},
		{[]netip.Prefix{p("10.0.0.192/26"), p("10.0.0.0/26"), p("10.0.0.128/26"), p("10.0.0.64/26")}, "[10.0.0.0/24]"},
		{[]netip.Prefix{p("10.0.0.0/26"), p("10.0.0.0/26")}, "[10.0.0.0/26]"},
		{[]netip.Prefix{p("10.0.0.0/24"), p("10.0.0.64/26")}, "[10.0.0.0/24]"},
	}
	for _, c := range cases {
		if got := fmt.Sprint(Aggregate(c.in)); got != c.want {
			t.Errorf("Aggregate(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

// TestAggregateCoversExactly: over random subsets of the /26 blocks of a
// /20, the aggregate covers the same addresses and no more.
func TestAggregateCoversExactly(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	base := netip.MustParsePrefix("10.9.0.0/20")
	for round := 0; round < 200; round++ {
		var in []netip.Prefix
		owned := map[netip.Addr]bool{}
		for i := 0; i < 64; i++ {
			a := netip.AddrFrom4([4]byte{10, 9, byte(i / 4), byte(i % 4 * 64)})
			if rng.Intn(3) > 0 {
				in = append(in, netip.PrefixFrom(a, 26))
				owned[a] = true
			}
		}
		out := Aggregate(in)
		if len(out) > len(in) {
			t.Fatalf("aggregate grew: %d > %d", len(out), len(in))
		}
		for i := 0; i < 64; i++ {
			a := netip.AddrFrom4([4]byte{10, 9, byte(i / 4), byte(i % 4 * 64)})
			covered := false
			for _, o := range out {
				if o.Contains(a) {
					covered = true
				}
				if !base.Contains(o.Addr()) {
					t.Fatalf("%s is outside %s", o, base)
				}
			}
			if covered != owned[a] {
				t.Fatalf("round %d: block %s owned=%v covered=%v (out %v)", round, a, owned[a], covered, out)
			}
		}
	}
}
