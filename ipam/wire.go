package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Wire format (all messages): magic 0xFB, format version 1, message type,
// then the body. Integers are unsigned varints unless noted; strings are a
// varint length (1..255) and bytes. Decoding never panics and rejects
// anything out of range (fuzzed in wire_test.go).
//
//	state:   flags(1) seed(8, big endian) fingerprint(8) sender(str) senderInc
//	         names: n, str*   (references below are index+1; 0 = none)
//	         runs: n, (first count ver owner ownerInc origin originInc prev prevInc unvouched(1))*
//	               sorted by first, non-overlapping, inside the space
//	         hosts: n, (name inc ver used(1) nheirs (name inc)* nuse (block count)*)*
//	         removals: n, (name inc nheirs (name inc)*)*
//	request: seed(8) fingerprint(8) flags(1) block, then an embedded state
//	         message (the requester's own record)
//	refuse:  seed(8) fingerprint(8) sender(str) flags(1) block reason(str)
const (
	wireMagic   = 0xFB
	wireVersion = 2 // 2: block entries carry Prev

	msgState   = 1
	msgRequest = 2
	msgRefuse  = 3

	stateFull = 1 << 0 // the whole view (push-pull), not a delta
	stateUsed = 1 << 1 // the sender's view has handed out addresses

	reqWant = 1 << 0 // a specific block is asked for

	maxNameLen = 255
	maxHeirs   = 8
	maxReason  = 255
)

// MaxBroadcast is the largest payload the allocator passes to
// Transport.Broadcast (memberlist gossip packets are small); larger deltas
// are split. SendTo and LocalState payloads are not limited.
const MaxBroadcast = 1000

var errShort = errors.New("truncated message")

type writer struct{ b []byte }

func (w *writer) byte(x byte) { w.b = append(w.b, x) }
func (w *writer) bool(x bool) {
	if x {
		w.byte(1)
	} else {
		w.byte(0)
	}
}
func (w *writer) uvarint(x uint64) { w.b = binary.AppendUvarint(w.b, x) }
func (w *writer) u64(x uint64)     { w.b = binary.BigEndian.AppendUint64(w.b, x) }
func (w *writer) str(s string) {
	w.uvarint(uint64(len(s)))
	w.b = append(w.b, s...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.fail(errShort)
		return 0
	}
	x := r.b[0]
	r.b = r.b[1:]
	return x
}

func (r *reader) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.fail(errShort)
		return 0
	}
	x := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return x
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errors.New("bad varint"))
		return 0
	}
	r.b = r.b[n:]
	return x
}

// num reads a varint that must be <= limit.
func (r *reader) num(limit uint64, what string) uint64 {
	x := r.uvarint()
	if r.err == nil && x > limit {
		r.fail(fmt.Errorf("%s %d out of range (max %d)", what, x, limit))
		return 0
	}
	return x
}

// count reads a list length; every element takes at least one byte, so a
// count larger than what is left is garbage.
func (r *reader) count(what string) int {
	return int(r.num(uint64(len(r.b)), what+" count"))
}

func (r *reader) str(limit int) string {
	n := int(r.num(uint64(limit), "string length"))
	if r.err != nil {
		return ""
	}
	if n > len(r.b) {
		r.fail(errShort)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// wireState is a decoded state message: a partial view (only the blocks,
// hosts and removals it carries are set).
type wireState struct {
	full     bool
	used     bool
	seed     uint64
	fp       uint64
	sender   ident
	runs     []wireRun // sorted, non-overlapping, inside the space
	hosts    map[ident]hostRec
	removals map[ident][]ident
}

// wireRun is n consecutive blocks from first with the same entry.
type wireRun struct {
	first, n uint32
	e        entry
	unv      bool // the sender holds it unvouched (view.unv)
}

// eachBlock calls fn for every block the state carries, in order.
func (st *wireState) eachBlock(fn func(b uint32, e entry, unv bool)) {
	for _, r := range st.runs {
		for b := r.first; b < r.first+r.n; b++ {
			fn(b, r.e, r.unv)
		}
	}
}

type wireRequest struct {
	seed  uint64
	fp    uint64
	want  bool
	block uint32
	state *wireState
}

type wireRefuse struct {
	seed   uint64
	fp     uint64
	sender string
	want   bool
	block  uint32
	reason string
}

// names interns strings for one message.
type names struct {
	idx  map[string]uint64
	list []string
}

func (n *names) ref(s string) uint64 {
	if s == "" {
		return 0
	}
	if i, ok := n.idx[s]; ok {
		return i
	}
	n.list = append(n.list, s)
	n.idx[s] = uint64(len(n.list))
	return n.idx[s]
}

// encodeState writes the parts of v named by d (or everything when full).
func encodeState(v *view, fp uint64, sender ident, used, full bool, d delta) []byte {
	if full {
		d = delta{}
		for i := range v.blocks {
			d.blocks = append(d.blocks, uint32(i))
		}
		for id := range v.hosts {
			d.hosts = append(d.hosts, id)
		}
		for id := range v.removed {
			d.removals = append(d.removals, id)
		}
	}
	sort.Slice(d.blocks, func(i, j int) bool { return d.blocks[i] < d.blocks[j] })
	sortIdents(d.hosts)
	sortIdents(d.removals)
	nm := &names{idx: map[string]uint64{}}
	var body writer
	writeRuns(&body, v, d.blocks, nm)
	writeHosts(&body, v, d.hosts, nm)
	writeRemovals(&body, v, d.removals, nm)

	var w writer
	w.byte(wireMagic)
	w.byte(wireVersion)
	w.byte(msgState)
	var flags byte
	if full {
		flags |= stateFull
	}
	if used {
		flags |= stateUsed
	}
	w.byte(flags)
	w.u64(v.seed)
	w.u64(fp)
	w.str(sender.Name)
	w.uvarint(uint64(sender.Inc))
	w.uvarint(uint64(len(nm.list)))
	for _, s := range nm.list {
		w.str(s)
	}
	w.b = append(w.b, body.b...)
	return w.b
}

func writeRuns(w *writer, v *view, blocks []uint32, nm *names) {
	var runs []wireRun
	for i, b := range blocks {
		if i > 0 && b == blocks[i-1] {
			continue
		}
		e, unv := v.blocks[b], v.unv[b]
		if k := len(runs); k > 0 && runs[k-1].first+runs[k-1].n == b && runs[k-1].e == e && runs[k-1].unv == unv {
			runs[k-1].n++
			continue
		}
		runs = append(runs, wireRun{b, 1, e, unv})
	}
	w.uvarint(uint64(len(runs)))
	for _, r := range runs {
		w.uvarint(uint64(r.first))
		w.uvarint(uint64(r.n))
		w.uvarint(r.e.Ver)
		w.uvarint(nm.ref(r.e.Owner.Name))
		w.uvarint(uint64(r.e.Owner.Inc))
		w.uvarint(nm.ref(r.e.Origin.Name))
		w.uvarint(uint64(r.e.Origin.Inc))
		w.uvarint(nm.ref(r.e.Prev.Name))
		w.uvarint(uint64(r.e.Prev.Inc))
		w.bool(r.unv)
	}
}

func writeIdents(w *writer, ids []ident, nm *names) {
	w.uvarint(uint64(len(ids)))
	for _, id := range ids {
		w.uvarint(nm.ref(id.Name))
		w.uvarint(uint64(id.Inc))
	}
}

func writeHosts(w *writer, v *view, hosts []ident, nm *names) {
	w.uvarint(uint64(len(hosts)))
	for _, id := range hosts {
		h := v.hosts[id]
		w.uvarint(nm.ref(id.Name))
		w.uvarint(uint64(id.Inc))
		w.uvarint(h.Ver)
		w.bool(h.Used)
		writeIdents(w, h.Heirs, nm)
		keys := make([]uint32, 0, len(h.Use))
		for k := range h.Use {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		w.uvarint(uint64(len(keys)))
		for _, k := range keys {
			w.uvarint(uint64(k))
			w.uvarint(uint64(h.Use[k]))
		}
	}
}

func writeRemovals(w *writer, v *view, ids []ident, nm *names) {
	w.uvarint(uint64(len(ids)))
	for _, id := range ids {
		w.uvarint(nm.ref(id.Name))
		w.uvarint(uint64(id.Inc))
		writeIdents(w, v.removed[id], nm)
	}
}

// decodeHeader checks magic and version and returns the message type.
func decodeHeader(r *reader) byte {
	if r.byte() != wireMagic {
		r.fail(errors.New("not an IPAM message"))
		return 0
	}
	if v := r.byte(); r.err == nil && v != wireVersion {
		r.fail(fmt.Errorf("IPAM message format %d is not supported (this agent speaks %d)", v, wireVersion))
		return 0
	}
	return r.byte()
}

// decodeMessage decodes any IPAM message for a space of nBlocks blocks. It
// returns one of *wireState, *wireRequest, *wireRefuse.
func decodeMessage(b []byte, nBlocks int) (any, error) {
	r := &reader{b: b}
	t := decodeHeader(r)
	var out any
	switch {
	case r.err != nil:
	case t == msgState:
		out = decodeStateBody(r, nBlocks)
	case t == msgRequest:
		out = decodeRequestBody(r, nBlocks)
	case t == msgRefuse:
		out = decodeRefuseBody(r, nBlocks)
	default:
		r.fail(fmt.Errorf("unknown IPAM message type %d", t))
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Errorf("%d trailing bytes", len(r.b)))
	}
	if r.err != nil {
		return nil, fmt.Errorf("decoding IPAM message: %w", r.err)
	}
	return out, nil
}

func readName(r *reader, tbl []string) string {
	i := r.num(uint64(len(tbl)), "name reference")
	if r.err != nil || i == 0 {
		return ""
	}
	return tbl[i-1]
}

func readInc(r *reader) uint32 { return uint32(r.num(1<<32-1, "incarnation")) }

func readIdents(r *reader, tbl []string) []ident {
	n := int(r.num(maxHeirs, "heir count"))
	var out []ident
	for i := 0; i < n && r.err == nil; i++ {
		id := ident{readName(r, tbl), readInc(r)}
		if id.Name == "" {
			r.fail(errors.New("empty heir name"))
		}
		out = append(out, id)
	}
	return out
}

func decodeStateBody(r *reader, nBlocks int) *wireState {
	st := &wireState{hosts: map[ident]hostRec{}, removals: map[ident][]ident{}}
	flags := r.byte()
	st.full, st.used = flags&stateFull != 0, flags&stateUsed != 0
	st.seed, st.fp = r.u64(), r.u64()
	st.sender = ident{r.str(maxNameLen), readInc(r)}
	if r.err == nil && st.sender.Name == "" {
		r.fail(errors.New("empty sender name"))
	}
	tbl := make([]string, 0, 8)
	for i, n := 0, r.count("name"); i < n && r.err == nil; i++ {
		s := r.str(maxNameLen)
		if r.err == nil && s == "" {
			r.fail(errors.New("empty name"))
		}
		tbl = append(tbl, s)
	}
	decodeRuns(r, st, tbl, nBlocks)
	for i, n := 0, r.count("host"); i < n && r.err == nil; i++ {
		id := ident{readName(r, tbl), readInc(r)}
		h := hostRec{Ver: r.uvarint(), Used: r.byte() == 1}
		h.Heirs = readIdents(r, tbl)
		h.Use = map[uint32]uint32{}
		for j, m := 0, r.count("use"); j < m && r.err == nil; j++ {
			b := uint32(r.num(uint64(nBlocks-1), "block"))
			h.Use[b] = uint32(r.num(1<<32-1, "use count"))
		}
		if r.err == nil && id.Name == "" {
			r.fail(errors.New("host record without a name"))
		}
		st.hosts[id] = h
	}
	for i, n := 0, r.count("removal"); i < n && r.err == nil; i++ {
		id := ident{readName(r, tbl), readInc(r)}
		heirs := readIdents(r, tbl)
		if r.err == nil && id.Name == "" {
			r.fail(errors.New("removal without a name"))
		}
		st.removals[id] = heirs
	}
	return st
}

func decodeRuns(r *reader, st *wireState, tbl []string, nBlocks int) {
	next := uint64(0)
	for i, n := 0, r.count("run"); i < n && r.err == nil; i++ {
		first := r.num(uint64(nBlocks-1), "block")
		cnt := r.num(uint64(nBlocks), "run length")
		if r.err == nil && (first < next || cnt == 0 || first+cnt > uint64(nBlocks)) {
			r.fail(fmt.Errorf("block run %d+%d overlaps or leaves the space", first, cnt))
		}
		e := entry{Ver: r.uvarint()}
		e.Owner = ident{readName(r, tbl), readInc(r)}
		e.Origin = ident{readName(r, tbl), readInc(r)}
		e.Prev = ident{readName(r, tbl), readInc(r)}
		if r.err == nil && e.Ver > maxVer {
			r.fail(fmt.Errorf("block version %d out of range", e.Ver))
		}
		unv := r.byte()
		if r.err == nil && unv > 1 {
			r.fail(errors.New("bad entry flag"))
		}
		if r.err != nil {
			return
		}
		st.runs = append(st.runs, wireRun{uint32(first), uint32(cnt), e, unv == 1})
		next = first + cnt
	}
}

func encodeRequest(seed, fp uint64, want bool, block uint32, state []byte) []byte {
	var w writer
	w.byte(wireMagic)
	w.byte(wireVersion)
	w.byte(msgRequest)
	w.u64(seed)
	w.u64(fp)
	var flags byte
	if want {
		flags |= reqWant
	}
	w.byte(flags)
	w.uvarint(uint64(block))
	w.b = append(w.b, state...)
	return w.b
}

func decodeRequestBody(r *reader, nBlocks int) *wireRequest {
	q := &wireRequest{seed: r.u64(), fp: r.u64()}
	q.want = r.byte()&reqWant != 0
	q.block = uint32(r.num(uint64(nBlocks-1), "block"))
	if r.err != nil {
		return q
	}
	if t := decodeHeader(r); r.err == nil && t != msgState {
		r.fail(errors.New("request without the requester's state"))
	}
	if r.err == nil {
		q.state = decodeStateBody(r, nBlocks)
	}
	return q
}

func encodeRefuse(seed, fp uint64, sender string, want bool, block uint32, reason string) []byte {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	var w writer
	w.byte(wireMagic)
	w.byte(wireVersion)
	w.byte(msgRefuse)
	w.u64(seed)
	w.u64(fp)
	w.str(sender)
	var flags byte
	if want {
		flags |= reqWant
	}
	w.byte(flags)
	w.uvarint(uint64(block))
	w.str(reason)
	return w.b
}

func decodeRefuseBody(r *reader, nBlocks int) *wireRefuse {
	f := &wireRefuse{seed: r.u64(), fp: r.u64(), sender: r.str(maxNameLen)}
	f.want = r.byte()&reqWant != 0
	f.block = uint32(r.num(uint64(nBlocks-1), "block"))
	f.reason = r.str(maxReason)
	if r.err == nil && f.sender == "" {
		r.fail(errors.New("refusal without a sender"))
	}
	return f
}

// splitDelta encodes d as state messages of at most limit bytes each
// (a single item larger than limit is still sent alone).
func splitDelta(v *view, fp uint64, sender ident, used bool, d delta, limit int) [][]byte {
	b := encodeState(v, fp, sender, used, false, d)
	n := len(d.blocks) + len(d.hosts) + len(d.removals)
	if len(b) <= limit || n <= 1 {
		return [][]byte{b}
	}
	var a, c delta
	half, i := n/2, 0
	pick := func() *delta {
		i++
		if i <= half {
			return &a
		}
		return &c
	}
	for _, x := range d.blocks {
		p := pick()
		p.blocks = append(p.blocks, x)
	}
	for _, x := range d.hosts {
		p := pick()
		p.hosts = append(p.hosts, x)
	}
	for _, x := range d.removals {
		p := pick()
		p.removals = append(p.removals, x)
	}
	return append(splitDelta(v, fp, sender, used, a, limit), splitDelta(v, fp, sender, used, c, limit)...)
}
