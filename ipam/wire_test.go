package ipam

import (
	"bytes"
	"math/rand"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	for i := 0; i < 200; i++ {
		v := randomView(r, 16)
		b := encodeState(v, 99, ident{"me", 3}, true, true, delta{})
		m, err := decodeMessage(b, 16)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		st := m.(*wireState)
		if !st.full || !st.used || st.seed != 7 || st.fp != 99 || st.sender != (ident{"me", 3}) {
			t.Fatalf("header: %+v", st)
		}
		got := newView(7, 16)
		st.eachBlock(func(b uint32, e entry, unv bool) {
			got.blocks[b] = e
			if unv {
				got.unv[b] = true
			}
		})
		got.merge(&view{hosts: st.hosts, removed: st.removals})
		if !sameView(got, v) {
			t.Fatalf("case %d: decoded view differs", i)
		}
	}
}

func TestDeltaAndSplit(t *testing.T) {
	v := newView(5, 4096)
	for i := range v.blocks {
		v.blocks[i] = entry{Ver: uint64(i % 7), Owner: ident{"host-with-a-long-name-" + string(rune('a'+i%20)), uint32(i)}}
	}
	var d delta
	for i := 0; i < 4096; i += 3 {
		d.blocks = append(d.blocks, uint32(i))
	}
	parts := splitDelta(v, 1, ident{Name: "x"}, false, d, MaxBroadcast)
	if len(parts) < 2 {
		t.Fatalf("expected a split, got %d parts", len(parts))
	}
	seen := 0
	for _, p := range parts {
		if len(p) > MaxBroadcast {
			t.Errorf("part of %d bytes", len(p))
		}
		m, err := decodeMessage(p, 4096)
		if err != nil {
			t.Fatal(err)
		}
		st := m.(*wireState)
		if st.full {
			t.Error("a delta must not claim to be full")
		}
		st.eachBlock(func(b uint32, e entry, _ bool) {
			if v.blocks[b] != e {
				t.Fatalf("block %d: %+v != %+v", b, e, v.blocks[b])
			}
			seen++
		})
	}
	if seen != len(d.blocks) {
		t.Fatalf("%d of %d blocks arrived", seen, len(d.blocks))
	}
}

func TestRequestAndRefuseRoundTrip(t *testing.T) {
	v := newView(5, 8)
	v.hosts[ident{"h1", 2}] = hostRec{Ver: 4, Used: true, Use: map[uint32]uint32{3: 2}}
	st := encodeState(v, 11, ident{"h1", 2}, true, false, delta{hosts: []ident{{"h1", 2}}})
	m, err := decodeMessage(encodeRequest(5, 11, true, 6, st), 8)
	if err != nil {
		t.Fatal(err)
	}
	q := m.(*wireRequest)
	if q.seed != 5 || q.fp != 11 || !q.want || q.block != 6 || q.state.hosts[ident{"h1", 2}].Use[3] != 2 {
		t.Fatalf("request: %+v %+v", q, q.state)
	}
	m, err = decodeMessage(encodeRefuse(5, 11, "h2", true, 7, "busy"), 8)
	if err != nil {
		t.Fatal(err)
	}
	if f := m.(*wireRefuse); f.sender != "h2" || !f.want || f.block != 7 || f.reason != "busy" {
		t.Fatalf("refuse: %+v", f)
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	v := newView(5, 8)
	v.blocks[2] = entry{Ver: 1, Owner: ident{"a", 0}}
	good := encodeState(v, 1, ident{Name: "a"}, false, true, delta{})
	bad := [][]byte{
		nil,
		{wireMagic},
		{wireMagic, 9, msgState},
		{wireMagic, wireVersion, 77},
		append(append([]byte(nil), good...), 0),
		good[:len(good)-1],
	}
	for i, b := range bad {
		if _, err := decodeMessage(b, 8); err == nil {
			t.Errorf("case %d decoded", i)
		}
	}
	// The same state for a space of fewer blocks is out of range.
	if _, err := decodeMessage(good, 2); err == nil {
		t.Error("blocks outside the space decoded")
	}
}

func FuzzDecodeMessage(f *testing.F) {
	r := rand.New(rand.NewSource(5))
	v := randomView(r, 8)
	f.Add(encodeState(v, 1, ident{Name: "a"}, true, true, delta{}))
	f.Add(encodeRequest(1, 2, true, 3, encodeState(v, 1, ident{Name: "a"}, false, false, delta{hosts: []ident{{"a", 0}}})))
	f.Add(encodeRefuse(1, 2, "x", false, 0, "no"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b, 8)
		if err != nil {
			return
		}
		// Whatever decodes must be in range and re-encode to something
		// that decodes again.
		if st, ok := m.(*wireState); ok {
			nv := newView(st.seed, 8)
			st.eachBlock(func(blk uint32, e entry, _ bool) {
				if blk >= 8 {
					t.Fatalf("block %d out of range", blk)
				}
				nv.blocks[blk] = e
			})
			nv.merge(&view{hosts: st.hosts, removed: st.removals})
			again := encodeState(nv, st.fp, st.sender, st.used, true, delta{})
			if _, err := decodeMessage(again, 8); err != nil {
				t.Fatalf("re-encoded state does not decode: %v", err)
			}
		}
	})
}

func TestHandleGarbageNeverPanics(t *testing.T) {
	c := newClock()
	b := newBus()
	a := b.open(t, "h1", c, hostOpts{seed: true})
	r := rand.New(rand.NewSource(6))
	good := a.LocalState()
	for i := 0; i < 2000; i++ {
		m := append([]byte(nil), good...)
		for k := r.Intn(4) + 1; k > 0; k-- {
			m[r.Intn(len(m))] = byte(r.Intn(256))
		}
		if r.Intn(3) == 0 {
			m = m[:r.Intn(len(m))]
		}
		a.HandleMessage("x", m)
		_ = a.MergeRemoteState("x", m)
	}
	// Mutations that still decode are valid messages (gossip integrity is
	// the keyring's job); what matters is no panic and bounded memory.
	if n := len(a.Check()); n > maxConflicts+2 {
		t.Fatalf("%d problems recorded", n)
	}
	if !bytes.Equal(a.LocalState()[:3], good[:3]) {
		t.Fatal("header changed")
	}
}
