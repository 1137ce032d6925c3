package overlay

import (
	"net/netip"
	"slices"
)

// Aggregate merges blocks into the fewest prefixes that cover exactly the
// same addresses (two halves of a prefix become the prefix). A host that
// owns most of the space (the first host owns it all until it donates
// blocks) then needs a handful of routes on its peers, not a thousand.
// The input is not modified; the output is sorted.
func Aggregate(blocks []netip.Prefix) []netip.Prefix {
	cur := make([]netip.Prefix, 0, len(blocks))
	for _, b := range blocks {
		if b.IsValid() {
			cur = append(cur, b.Masked())
		}
	}
	for {
		slices.SortFunc(cur, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		cur = dropCovered(cur)
		merged := false
		out := cur[:0:0]
		for i := 0; i < len(cur); i++ {
			if i+1 < len(cur) && siblings(cur[i], cur[i+1]) {
				parent, _ := cur[i].Addr().Prefix(cur[i].Bits() - 1)
				out = append(out, parent)
				i++
				merged = true
				continue
			}
			out = append(out, cur[i])
		}
		cur = out
		if !merged {
			return cur
		}
	}
}

// dropCovered removes prefixes inside an earlier one (input sorted).
func dropCovered(sorted []netip.Prefix) []netip.Prefix {
	out := sorted[:0:0]
	for _, p := range sorted {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// siblings reports whether a and b are the two halves of one prefix.
func siblings(a, b netip.Prefix) bool {
	if a.Bits() != b.Bits() || a.Bits() == 0 || a.Addr().Is4() != b.Addr().Is4() {
		return false
	}
	pa, _ := a.Addr().Prefix(a.Bits() - 1)
	pb, _ := b.Addr().Prefix(b.Bits() - 1)
	return pa == pb && a != b
}
