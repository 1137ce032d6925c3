package overlay

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// The set answers exactly what a scan of every taken prefix answers.
func TestTakenSetMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var set takenSet
		var list []netip.Prefix
		for range 60 {
			bits := 20 + r.IntN(9)
			a := netip.AddrFrom4([4]byte{10, 213, byte(r.IntN(16)), byte(r.IntN(256))})
			blk, _ := a.Prefix(bits)
			var want netip.Prefix
			for _, l := range list {
				if l.Overlaps(blk) {
					want = l
					break
				}
			}
			got, owner, ok := set.overlapping(blk)
			if ok != want.IsValid() || (ok && (!got.Overlaps(blk) || owner != got.String())) {
				t.Fatalf("overlapping(%s) = %s %q %v; scan found %v in %v", blk, got, owner, ok, want, list)
			}
			if !ok {
				set.add(blk, blk.String())
				list = append(list, blk)
			}
		}
	}
	var v6 takenSet
	v6.add(netip.MustParsePrefix("fd00::/64"), "x")
	if _, _, ok := v6.overlapping(netip.MustParsePrefix("fd00::/48")); !ok {
		t.Error("a taken /64 under a /48 not found")
	}
	if _, _, ok := v6.overlapping(netip.MustParsePrefix("10.0.0.0/8")); ok {
		t.Error("an IPv4 prefix overlaps an IPv6 one")
	}
}
