package overlay

import "net/netip"

// takenSet holds disjoint, masked prefixes and finds one that overlaps a
// given prefix in O(address bits) instead of a scan of every prefix (a
// pass over a 4,000-host cluster spent 85% of its time in that scan).
// Two aligned prefixes overlap only when one contains the other, so blk
// overlaps a taken prefix iff blk or one of its ancestors is taken, or a
// taken prefix lies below blk (recorded in below for every ancestor of
// every taken prefix). The zero value is empty and ready.
type takenSet struct {
	owner map[netip.Prefix]string       // taken prefix -> who owns it
	below map[netip.Prefix]netip.Prefix // ancestor -> one taken prefix under it
}

// add records blk (masked) as taken by owner. The caller checks overlaps
// first.
func (t *takenSet) add(blk netip.Prefix, owner string) {
	if t.owner == nil {
		t.owner, t.below = map[netip.Prefix]string{}, map[netip.Prefix]netip.Prefix{}
	}
	t.owner[blk] = owner
	for bits := blk.Bits() - 1; bits >= 0; bits-- {
		anc, _ := blk.Addr().Prefix(bits)
		if _, ok := t.below[anc]; ok {
			break // its ancestors are recorded too
		}
		t.below[anc] = blk
	}
}

// overlapping returns a taken prefix that overlaps blk (masked), and its
// owner.
func (t *takenSet) overlapping(blk netip.Prefix) (netip.Prefix, string, bool) {
	if len(t.owner) == 0 {
		return netip.Prefix{}, "", false
	}
	for bits := blk.Bits(); bits >= 0; bits-- {
		anc, _ := blk.Addr().Prefix(bits)
		if o, ok := t.owner[anc]; ok {
			return anc, o, true
		}
	}
	if d, ok := t.below[blk]; ok {
		return d, t.owner[d], true
	}
	return netip.Prefix{}, "", false
}
