package ipam

import (
	"bytes"
	"math/rand"
	"testing"
)

// randomView makes a view with random entries, host records and removals
// drawn from small domains, so that collisions (equal versions with other
// owners, equal record versions with other content) are frequent.
func randomView(r *rand.Rand, n int) *view {
	names := []string{"a", "b", "c", "d"}
	id := func() ident { return ident{names[r.Intn(len(names))], uint32(r.Intn(2))} }
	v := newView(7, n)
	for i := range v.blocks {
		if r.Intn(4) == 0 {
			continue
		}
		e := entry{Ver: uint64(r.Intn(4))}
		if r.Intn(5) > 0 {
			e.Owner = id()
		}
		if r.Intn(3) == 0 {
			e.Origin = id()
		}
		v.blocks[i] = e
	}
	for k := r.Intn(5); k > 0; k-- {
		h := hostRec{Ver: uint64(r.Intn(3)), Used: r.Intn(2) == 0, Use: map[uint32]uint32{}}
		for j := r.Intn(3); j > 0; j-- {
			h.Heirs = append(h.Heirs, id())
		}
		if r.Intn(2) == 0 {
			h.Use[uint32(r.Intn(n))] = uint32(1 + r.Intn(3))
		}
		v.hosts[id()] = h
	}
	for k := r.Intn(3); k > 0; k-- {
		var heirs []ident
		for j := r.Intn(3); j > 0; j-- {
			heirs = append(heirs, id())
		}
		v.setRemoval(id(), heirs)
	}
	return v
}

func merged(vs ...*view) *view {
	out := vs[0].clone()
	for _, v := range vs[1:] {
		out.merge(v)
	}
	return out
}

func sameView(x, y *view) bool {
	return bytes.Equal(encodeState(x, 1, ident{Name: "t"}, false, true, delta{}),
		encodeState(y, 1, ident{Name: "t"}, false, true, delta{}))
}

func TestMergeIsASemilattice(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 3000; i++ {
		a, b, c := randomView(r, 6), randomView(r, 6), randomView(r, 6)
		if !sameView(merged(a, b), merged(b, a)) {
			t.Fatalf("case %d: merge is not commutative", i)
		}
		if !sameView(merged(merged(a, b), c), merged(a, merged(b, c))) {
			t.Fatalf("case %d: merge is not associative", i)
		}
		if !sameView(merged(a, a), a) {
			t.Fatalf("case %d: merge is not idempotent", i)
		}
		ab := merged(a, b)
		if d := ab.clone().merge(a); !d.empty() {
			t.Fatalf("case %d: merging a part into the whole changed %+v", i, d)
		}
	}
}

func TestEntryOrderIsTotal(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	v := randomView(r, 200)
	for i, x := range v.blocks {
		for _, y := range v.blocks[i:] {
			if x != y && entryLess(x, y) == entryLess(y, x) {
				t.Fatalf("entries %+v and %+v are not ordered", x, y)
			}
			if entryLess(x, x) {
				t.Fatalf("entry %+v less than itself", x)
			}
		}
	}
}

func TestHeirWalk(t *testing.T) {
	x, b, c, d, e := ident{"x", 1}, ident{"b", 1}, ident{"c", 1}, ident{"d", 1}, ident{"e", 1}
	v := newView(1, 1)
	v.setRemoval(x, []ident{b, e})
	if got, res := v.heirOf(x); res != walkFound || got != b {
		t.Fatalf("first heir: %v %v", got, res)
	}
	// b is removed too: its own list comes before x's next heir (depth
	// first), so the answer equals walking from b.
	v.setRemoval(b, []ident{c, d})
	if got, res := v.heirOf(x); res != walkFound || got != c {
		t.Fatalf("depth first: %v %v", got, res)
	}
	if got, _ := v.heirOf(b); got != c {
		t.Fatalf("from b: %v", got)
	}
	v.setRemoval(c, []ident{x, b}) // a cycle back
	if got, res := v.heirOf(x); res != walkFound || got != d {
		t.Fatalf("past a cycle: %v %v", got, res)
	}
	v.setRemoval(d, nil)
	if got, res := v.heirOf(x); res != walkFound || got != e {
		t.Fatalf("back to x's second heir: %v %v", got, res)
	}
	v.setRemoval(e, nil)
	if _, res := v.heirOf(x); res != walkNone {
		t.Fatalf("all removed: %v", res)
	}
	if _, res := v.heirOf(ident{"y", 1}); res != walkDeferred {
		t.Fatalf("no removal record: %v", res)
	}
}

// TestHeirWalkAgreesAcrossViews checks the core claim of the rmpeer rule:
// views that know different subsets of the removals never pick two
// different identities that are not removed in the union of all views.
func TestHeirWalkAgreesAcrossViews(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for i := 0; i < 2000; i++ {
		n := 3 + r.Intn(6)
		ids := make([]ident, n)
		for k := range ids {
			ids[k] = ident{string(rune('a' + k)), 1}
		}
		heirs := map[ident][]ident{}
		for _, id := range ids {
			for j := r.Intn(4); j > 0; j-- {
				heirs[id] = append(heirs[id], ids[r.Intn(n)])
			}
		}
		// Globally removed: ids[0] (the origin) and a random subset.
		global := map[ident]bool{ids[0]: true}
		for _, id := range ids[1:] {
			if r.Intn(2) == 0 {
				global[id] = true
			}
		}
		live := map[ident]bool{}
		for k := 0; k < 6; k++ {
			v := newView(1, 1)
			for id := range global {
				if id == ids[0] || r.Intn(2) == 0 {
					v.setRemoval(id, heirs[id])
				}
			}
			if got, res := v.heirOf(ids[0]); res == walkFound && !global[got] {
				live[got] = true
			}
		}
		if len(live) > 1 {
			t.Fatalf("case %d: views chose different live heirs %v", i, live)
		}
	}
}
