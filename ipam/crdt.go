package ipam

import (
	"bytes"
	"fmt"
	"sort"
)

// ident is one life of a host: its name and incarnation. A host whose name
// was removed by rmpeer and that comes back with empty state takes the next
// incarnation, so nothing owned by its old life is mistaken for its own.
type ident struct {
	Name string
	Inc  uint32
}

func (i ident) String() string {
	if i.Inc == 0 {
		return i.Name
	}
	return fmt.Sprintf("%s#%d", i.Name, i.Inc)
}

func (i ident) zero() bool { return i.Name == "" }

// entry is the ownership of one block. Owner.Name == "" means unowned (the
// space is not seeded yet, or a reclaim found no live heir). Origin is set on
// entries written by a reclaim: the removed identity whose heir list decides
// who gets the block, kept so that later reclaims of the same block follow
// the same list (docs/ipam.md, "rmpeer").
type entry struct {
	Ver    uint64
	Owner  ident
	Origin ident
	// Prev is who wrote a hand-over: the previous owner of a donation or a
	// Leave, the owner itself when it re-asserts a block after a forged
	// change (a refutation), or a host restoring its view after a change
	// forged in its name. Zero for seeded blocks and reclaims. A host
	// trusts a block handed to it only from Prev itself (docs/ipam.md).
	Prev ident
}

// reasserted reports whether e is an owner re-asserting its block (after a
// forged change): a block handed over from such an entry is not trusted.
func (e entry) reasserted() bool { return e.Owner.Name != "" && e.Prev == e.Owner }

// entryLess is the total order merges use: the larger entry wins. Higher
// version first; at equal versions (which only a violated rmpeer
// precondition can produce) an owned entry beats an unowned one, then the
// smaller owner name, then the larger incarnation, then the origin. Any two
// distinct entries are ordered, so max is commutative, associative and
// idempotent.
func entryLess(a, b entry) bool {
	if a.Ver != b.Ver {
		return a.Ver < b.Ver
	}
	if (a.Owner.Name == "") != (b.Owner.Name == "") {
		return a.Owner.Name == ""
	}
	if a.Owner.Name != b.Owner.Name {
		return a.Owner.Name > b.Owner.Name
	}
	if a.Owner.Inc != b.Owner.Inc {
		return a.Owner.Inc < b.Owner.Inc
	}
	if a.Origin.Name != b.Origin.Name {
		return a.Origin.Name > b.Origin.Name
	}
	if a.Origin.Inc != b.Origin.Inc {
		return a.Origin.Inc < b.Origin.Inc
	}
	if a.Prev.Name != b.Prev.Name {
		return a.Prev.Name > b.Prev.Name
	}
	return a.Prev.Inc < b.Prev.Inc
}

// hostRec is what one identity says about itself. Only that identity
// writes it, with an increasing Ver; the larger Ver wins.
type hostRec struct {
	Ver   uint64
	Used  bool              // has ever handed out an address (sticky)
	Heirs []ident           // who takes this identity's blocks if it is removed
	Use   map[uint32]uint32 // allocated addresses per owned block (non-zero only)
}

func (h hostRec) clone() hostRec {
	c := h
	c.Heirs = append([]ident(nil), h.Heirs...)
	c.Use = make(map[uint32]uint32, len(h.Use))
	for k, v := range h.Use {
		c.Use[k] = v
	}
	return c
}

// hostLess orders records of one identity; ties (impossible for a single
// writer) are broken on the canonical encoding so merge stays a semilattice.
func hostLess(a, b hostRec) bool {
	if a.Ver != b.Ver {
		return a.Ver < b.Ver
	}
	if hostEqual(a, b) {
		return false
	}
	return bytes.Compare(canonHost(a), canonHost(b)) < 0
}

func hostEqual(a, b hostRec) bool {
	if a.Used != b.Used || !sameIdents(a.Heirs, b.Heirs) || len(a.Use) != len(b.Use) {
		return false
	}
	for k, v := range a.Use {
		if w, ok := b.Use[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func canonHost(h hostRec) []byte {
	var w writer
	w.bool(h.Used)
	w.uvarint(uint64(len(h.Heirs)))
	for _, x := range h.Heirs {
		w.str(x.Name)
		w.uvarint(uint64(x.Inc))
	}
	keys := make([]uint32, 0, len(h.Use))
	for k := range h.Use {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, k := range keys {
		w.uvarint(uint64(k))
		w.uvarint(uint64(h.Use[k]))
	}
	return w.b
}

func canonHeirs(hs []ident) []byte {
	var w writer
	for _, x := range hs {
		w.str(x.Name)
		w.uvarint(uint64(x.Inc))
	}
	return w.b
}

// view is one host's copy of the cluster-wide map: a seed, one entry per
// block, host records and removal records (rmpeer tombstones with the
// removed identity's heir list as it was when it was removed).
type view struct {
	seed    uint64
	blocks  []entry
	hosts   map[ident]hostRec
	removed map[ident][]ident
	// unv: blocks whose entry this view learnt only from the host it names
	// (a host relaying a block handed to itself) and never from the writer
	// of the hand-over or a third party: a hand-over from such an entry is
	// not trusted. Local knowledge, gossiped as a flag on the entry so that
	// a relay does not launder it; not part of the merge order or digest.
	unv map[uint32]bool
}

func newView(seed uint64, nBlocks int) *view {
	return &view{
		seed:    seed,
		blocks:  make([]entry, nBlocks),
		hosts:   map[ident]hostRec{},
		removed: map[ident][]ident{},
		unv:     map[uint32]bool{},
	}
}

func (v *view) clone() *view {
	c := newView(v.seed, len(v.blocks))
	copy(c.blocks, v.blocks)
	for k, h := range v.hosts {
		c.hosts[k] = h.clone()
	}
	for k, r := range v.removed {
		c.setRemoval(k, append([]ident(nil), r...))
	}
	for k := range v.unv {
		c.unv[k] = true
	}
	return c
}

func (v *view) setRemoval(id ident, heirs []ident) { v.removed[id] = heirs }

// isRemoved reports whether identity id was removed by rmpeer.
func (v *view) isRemoved(id ident) bool {
	_, ok := v.removed[id]
	return ok
}

// current returns the latest identity (highest incarnation) of a name
// among the host records, and whether there is one.
func (v *view) current(name string) (ident, bool) {
	best, ok := ident{Name: name}, false
	for id := range v.hosts {
		if id.Name == name && (!ok || id.Inc > best.Inc) {
			best, ok = id, true
		}
	}
	return best, ok
}

// delta names what changed in a view; it is what gets broadcast.
type delta struct {
	blocks   []uint32
	hosts    []ident
	removals []ident
	newHosts int // identities seen for the first time (not broadcast)
}

func (d *delta) empty() bool {
	return len(d.blocks) == 0 && len(d.hosts) == 0 && len(d.removals) == 0
}

func (d *delta) add(o delta) {
	d.blocks = append(d.blocks, o.blocks...)
	d.hosts = append(d.hosts, o.hosts...)
	d.removals = append(d.removals, o.removals...)
	d.newHosts += o.newHosts
}

// merge folds o (same seed, same geometry) into v: per block the larger
// entry, per host the larger record, removals by union. It returns what
// changed in v.
func (v *view) merge(o *view) delta {
	var d delta
	for i := range o.blocks {
		if i < len(v.blocks) && entryLess(v.blocks[i], o.blocks[i]) {
			v.blocks[i] = o.blocks[i]
			d.blocks = append(d.blocks, uint32(i))
		}
	}
	for id, h := range o.hosts {
		if cur, ok := v.hosts[id]; !ok || hostLess(cur, h) {
			if !ok {
				d.newHosts++
			}
			v.hosts[id] = h.clone()
			d.hosts = append(d.hosts, id)
		}
	}
	for id, heirs := range o.removed {
		cur, ok := v.removed[id]
		if !ok || bytes.Compare(canonHeirs(heirs), canonHeirs(cur)) < 0 {
			v.setRemoval(id, append([]ident(nil), heirs...))
			d.removals = append(d.removals, id)
		}
	}
	sort.Slice(d.blocks, func(i, j int) bool { return d.blocks[i] < d.blocks[j] })
	sortIdents(d.hosts)
	sortIdents(d.removals)
	return d
}

// walkResult is the outcome of looking for a removed identity's heir.
type walkResult int

const (
	walkFound    walkResult = iota // a non-removed heir
	walkNone                       // every heir reachable is removed
	walkDeferred                   // a needed removal record is missing here
)

// heirOf finds who inherits from the removed identity origin: a depth-first
// walk over heir lists (each removed identity's list as recorded in its
// removal record), returning the first identity that is not removed. The
// lists of removed identities never change, so every host walks the same
// sequence and stops either at the same first live heir or earlier, at an
// identity that is dead (docs/ipam.md has the proof).
func (v *view) heirOf(origin ident) (ident, walkResult) {
	visited := map[ident]bool{origin: true}
	var visit func(id ident, depth int) (ident, walkResult)
	visit = func(id ident, depth int) (ident, walkResult) {
		heirs, ok := v.removed[id]
		if !ok || depth > 64 {
			return ident{}, walkDeferred
		}
		for _, h := range heirs {
			if visited[h] || h.Name == "" {
				continue
			}
			visited[h] = true
			if !v.isRemoved(h) {
				return h, walkFound
			}
			if got, res := visit(h, depth+1); res != walkNone {
				return got, res
			}
		}
		return ident{}, walkNone
	}
	return visit(origin, 0)
}

// inHeirClosure reports whether target is reachable from origin through
// the heir lists of removal records (origin's own list first).
func (v *view) inHeirClosure(origin, target ident) bool {
	seen := map[ident]bool{origin: true}
	queue := []ident{origin}
	for len(queue) > 0 && len(seen) < 4096 {
		id := queue[0]
		queue = queue[1:]
		for _, h := range v.removed[id] {
			if h == target {
				return true
			}
			if !seen[h] {
				seen[h] = true
				queue = append(queue, h)
			}
		}
	}
	return false
}

// owners counts blocks per owner identity (unowned excluded).
func (v *view) owners() map[ident]int {
	m := map[ident]int{}
	for _, e := range v.blocks {
		if e.Owner.Name != "" {
			m[e.Owner]++
		}
	}
	return m
}

func sortIdents(ids []ident) {
	sort.Slice(ids, func(i, j int) bool {
		if ids[i].Name != ids[j].Name {
			return ids[i].Name < ids[j].Name
		}
		return ids[i].Inc < ids[j].Inc
	})
}
