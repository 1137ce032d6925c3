package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/flatmesh/flatmesh/internal/atomicfile"
)

// StateFile is the name of the allocator's file in Options.StateDir.
const StateFile = "ipam.json"

// stateFormat is the version of the file layout; Open refuses others.
const stateFormat = 1

type fileIdent struct {
	Name string `json:"name"`
	Inc  uint32 `json:"inc,omitempty"`
}

type fileRun struct {
	First  uint32     `json:"first"`
	Count  uint32     `json:"count"`
	Ver    uint64     `json:"ver"`
	Owner  *fileIdent `json:"owner,omitempty"`
	Origin *fileIdent `json:"origin,omitempty"`
	Prev   *fileIdent `json:"prev,omitempty"`
}

type fileHost struct {
	Name  string            `json:"name"`
	Inc   uint32            `json:"inc,omitempty"`
	Ver   uint64            `json:"ver"`
	Used  bool              `json:"used,omitempty"`
	Heirs []fileIdent       `json:"heirs,omitempty"`
	Use   map[string]uint32 `json:"use,omitempty"`
}

type fileRemoval struct {
	fileIdent
	Heirs []fileIdent `json:"heirs"`
}

type fileAlloc struct {
	ID     string     `json:"id"`
	IfName string     `json:"ifname,omitempty"`
	Name   string     `json:"name,omitempty"`
	Addr   netip.Addr `json:"addr"`
}

type fileFreed struct {
	Addr netip.Addr `json:"addr"`
	At   time.Time  `json:"at"`
}

// stateFile is the JSON layout of StateFile.
type stateFile struct {
	Format      int           `json:"format"`
	Self        string        `json:"self"`
	Inc         uint32        `json:"inc,omitempty"`
	CIDR        netip.Prefix  `json:"cidr"`
	BlockBits   int           `json:"block_bits"`
	Seed        string        `json:"seed"`
	Used        bool          `json:"used,omitempty"`
	Blocks      []fileRun     `json:"blocks"`
	Hosts       []fileHost    `json:"hosts,omitempty"`
	Removed     []fileRemoval `json:"removed,omitempty"`
	RemovedByMe []fileIdent   `json:"removed_by_me,omitempty"`
	Untrusted   []uint32      `json:"untrusted,omitempty"`
	Unvouched   []uint32      `json:"unvouched,omitempty"`
	Allocations []fileAlloc   `json:"allocations"`
	Freed       []fileFreed   `json:"freed,omitempty"`
}

func toFileIdent(id ident) *fileIdent {
	if id.Name == "" {
		return nil
	}
	return &fileIdent{id.Name, id.Inc}
}

func fromFileIdent(f *fileIdent) ident {
	if f == nil {
		return ident{}
	}
	return ident{f.Name, f.Inc}
}

func toFileIdents(ids []ident) []fileIdent {
	out := make([]fileIdent, 0, len(ids))
	for _, id := range ids {
		out = append(out, fileIdent{id.Name, id.Inc})
	}
	return out
}

func fromFileIdents(fs []fileIdent) []ident {
	var out []ident
	for _, f := range fs {
		out = append(out, ident{f.Name, f.Inc})
	}
	return out
}

// snapshot renders the allocator's state as a stateFile. Caller holds a.mu.
func (a *Allocator) snapshot() *stateFile {
	f := &stateFile{
		Format: stateFormat, Self: a.self.Name, Inc: a.self.Inc,
		CIDR: a.sp.cidr, BlockBits: a.sp.blockBits,
		Seed: fmt.Sprintf("%016x", a.v.seed), Used: a.used,
		Allocations: []fileAlloc{},
	}
	for i := 0; i < len(a.v.blocks); {
		j := i + 1
		for j < len(a.v.blocks) && a.v.blocks[j] == a.v.blocks[i] {
			j++
		}
		e := a.v.blocks[i]
		f.Blocks = append(f.Blocks, fileRun{uint32(i), uint32(j - i), e.Ver, toFileIdent(e.Owner), toFileIdent(e.Origin), toFileIdent(e.Prev)})
		i = j
	}
	for id, h := range a.v.hosts {
		fh := fileHost{Name: id.Name, Inc: id.Inc, Ver: h.Ver, Used: h.Used, Heirs: toFileIdents(h.Heirs)}
		if len(h.Use) > 0 {
			fh.Use = map[string]uint32{}
			for b, n := range h.Use {
				fh.Use[strconv.Itoa(int(b))] = n
			}
		}
		f.Hosts = append(f.Hosts, fh)
	}
	sort.Slice(f.Hosts, func(i, j int) bool {
		x, y := f.Hosts[i], f.Hosts[j]
		return x.Name < y.Name || x.Name == y.Name && x.Inc < y.Inc
	})
	for id, heirs := range a.v.removed {
		f.Removed = append(f.Removed, fileRemoval{fileIdent{id.Name, id.Inc}, toFileIdents(heirs)})
	}
	sort.Slice(f.Removed, func(i, j int) bool {
		x, y := f.Removed[i], f.Removed[j]
		return x.Name < y.Name || x.Name == y.Name && x.Inc < y.Inc
	})
	for id := range a.removedByMe {
		f.RemovedByMe = append(f.RemovedByMe, fileIdent{id.Name, id.Inc})
	}
	sort.Slice(f.RemovedByMe, func(i, j int) bool {
		x, y := f.RemovedByMe[i], f.RemovedByMe[j]
		return x.Name < y.Name || x.Name == y.Name && x.Inc < y.Inc
	})
	f.Untrusted, f.Unvouched = sortedSet(a.untrusted), sortedSet(a.v.unv)
	for _, al := range a.sortedAllocs() {
		f.Allocations = append(f.Allocations, fileAlloc{al.ID, al.IfName, al.Name, a.sp.addrAt(al.off)})
	}
	for _, m := range a.freed {
		for off, at := range m {
			f.Freed = append(f.Freed, fileFreed{a.sp.addrAt(off), at})
		}
	}
	sort.Slice(f.Freed, func(i, j int) bool { return f.Freed[i].Addr.Less(f.Freed[j].Addr) })
	return f
}

// save writes the state atomically: a temporary file in the same directory,
// fsync, rename over StateFile, fsync of the directory. Caller holds a.mu.
func (a *Allocator) save() error {
	a.pruneFreed()
	if a.path == "" {
		return nil
	}
	data, err := json.Marshal(a.snapshot())
	if err != nil {
		return fmt.Errorf("encoding IPAM state: %w", err)
	}
	if err := atomicfile.Write(a.path, append(data, '\n'), atomicfile.Options{NoSync: a.opts.noSync}); err != nil {
		return fmt.Errorf("saving IPAM state: %w", err)
	}
	a.dirty = false
	a.saves++
	return nil
}

// readState loads and validates the state file. A missing file returns
// (nil, nil); anything unreadable is an error naming the file: the
// allocator never starts over silently, since that could hand out
// addresses that containers still use.
func readState(path string) (*stateFile, error) {
	var f stateFile
	found, err := atomicfile.ReadVersioned(path, atomicfile.Versioned{Field: "format", Want: stateFormat}, &f)
	var ce *atomicfile.CorruptError
	var ve *atomicfile.VersionError
	switch {
	case errors.As(err, &ce):
		return nil, fmt.Errorf("IPAM state file %s is corrupt (%v); it is left untouched: restore it from a backup, or, only if no container of this host uses a flatmesh address any more, move it aside and restart", path, ce.Err)
	case errors.As(err, &ve):
		return nil, fmt.Errorf("IPAM state file %s has format %d; this agent reads format %d", path, ve.Have, ve.Want)
	case err != nil:
		return nil, fmt.Errorf("reading IPAM state %s: %w", path, err)
	case !found:
		return nil, nil
	}
	return &f, nil
}

// load installs a state file into a fresh allocator, checking every field.
func (a *Allocator) load(f *stateFile) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("IPAM state file %s: %s", a.path, fmt.Sprintf(format, args...))
	}
	if f.Self != a.self.Name {
		return bad("it belongs to host %q, but this host is %q", f.Self, a.self.Name)
	}
	if f.CIDR != a.sp.cidr || f.BlockBits != a.sp.blockBits {
		return bad("it was made for %s with /%d blocks, but the configuration says %s with /%d blocks; changing the space of a running cluster is not supported",
			f.CIDR, f.BlockBits, a.sp.cidr, a.sp.blockBits)
	}
	seed, err := strconv.ParseUint(f.Seed, 16, 64)
	if err != nil {
		return bad("bad seed %q", f.Seed)
	}
	a.self.Inc, a.used = f.Inc, f.Used
	a.v = newView(seed, a.sp.nBlocks)
	next := uint32(0)
	for _, r := range f.Blocks {
		if r.First != next || r.Count == 0 || uint64(r.First)+uint64(r.Count) > uint64(a.sp.nBlocks) {
			return bad("block runs are not contiguous at block %d", r.First)
		}
		e := entry{r.Ver, fromFileIdent(r.Owner), fromFileIdent(r.Origin), fromFileIdent(r.Prev)}
		for b := r.First; b < r.First+r.Count; b++ {
			a.v.blocks[b] = e
		}
		next = r.First + r.Count
	}
	if int(next) != a.sp.nBlocks {
		return bad("it lists %d of %d blocks", next, a.sp.nBlocks)
	}
	if err := a.loadHosts(f); err != nil {
		return bad("%v", err)
	}
	return a.loadAllocs(f, bad)
}

func (a *Allocator) loadHosts(f *stateFile) error {
	for _, h := range f.Hosts {
		rec := hostRec{Ver: h.Ver, Used: h.Used, Heirs: fromFileIdents(h.Heirs), Use: map[uint32]uint32{}}
		for k, n := range h.Use {
			b, err := strconv.Atoi(k)
			if err != nil || b < 0 || b >= a.sp.nBlocks {
				return fmt.Errorf("host %s: bad block %q", h.Name, k)
			}
			rec.Use[uint32(b)] = n
		}
		a.v.hosts[ident{h.Name, h.Inc}] = rec
	}
	for _, r := range f.Removed {
		a.v.setRemoval(ident{r.Name, r.Inc}, fromFileIdents(r.Heirs))
	}
	for _, r := range f.RemovedByMe {
		a.removedByMe[ident{r.Name, r.Inc}] = true
	}
	for _, b := range f.Untrusted {
		if int(b) >= a.sp.nBlocks {
			return fmt.Errorf("untrusted block %d out of range", b)
		}
		a.untrusted[b] = true
	}
	for _, b := range f.Unvouched {
		if int(b) >= a.sp.nBlocks {
			return fmt.Errorf("unvouched block %d out of range", b)
		}
		a.v.unv[b] = true
	}
	return nil
}

func (a *Allocator) loadAllocs(f *stateFile, bad func(string, ...any) error) error {
	for _, al := range f.Allocations {
		off, ok := a.sp.offsetOf(al.Addr)
		if !ok {
			return bad("allocation %s/%s: address %s is outside %s", al.ID, al.IfName, al.Addr, a.sp.cidr)
		}
		k := allocKey{al.ID, al.IfName}
		if _, dup := a.allocs[k]; dup {
			return bad("allocation %s/%s is listed twice", al.ID, al.IfName)
		}
		if other, dup := a.byOff[off]; dup {
			return bad("address %s is listed for both %s/%s and %s/%s", al.Addr, other.ID, other.IfName, al.ID, al.IfName)
		}
		a.addAlloc(&alloc{ID: al.ID, IfName: al.IfName, Name: al.Name, off: off})
	}
	for _, fr := range f.Freed {
		off, ok := a.sp.offsetOf(fr.Addr)
		if !ok {
			return bad("freed address %s is outside %s", fr.Addr, a.sp.cidr)
		}
		a.setFreed(off, fr.At)
	}
	return nil
}

func sortedSet(m map[uint32]bool) []uint32 {
	var out []uint32
	for b := range m {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
