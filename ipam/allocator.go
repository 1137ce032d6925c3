// Package ipam is flatmesh's cluster-wide address allocator: pure logic, no
// netlink. The space is cut into blocks; every block has exactly one owner
// host and a host hands out addresses only from blocks it owns, so an
// allocation is a local operation that keeps working during a partition.
// Ownership moves only by the owner's hand (a donation to a host that asks)
// or by an operator's rmpeer of a dead host. The ownership map is a CRDT
// gossiped through a Transport. docs/ipam.md explains the invariant, the
// merge rule, bootstrap and rmpeer, and why they cannot break.
package ipam

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Transport is how the allocator talks to its peers; the agent implements
// it on top of the cluster. The allocator calls it without holding its lock,
// from the goroutine that called an Allocator method (the agent's gossip
// worker for HandleMessages, API handlers for Allocate), so implementations
// must not block for long: queue per peer, and send in the background.
// Messages may be lost, duplicated or reordered; the allocator copes.
type Transport interface {
	// Broadcast sends payload (at most MaxBroadcast bytes) to every member.
	Broadcast(payload []byte)
	// SendTo sends payload to one member; an error means it was not sent.
	SendTo(peer string, payload []byte) error
}

// Options configures Open.
type Options struct {
	Self     string // this host's name, unique in the cluster
	Config   Config
	StateDir string // StateFile lives here; "" keeps state in memory only (tests)
	// Seed makes this host create the map when it has no state: the first
	// host of a cluster (started without join addresses) seeds; the others
	// adopt the map of the first seeded host they hear from.
	Seed      bool
	Transport Transport // nil: no messages (a single host)
	Logger    hclog.Logger
	Now       func() time.Time // nil: time.Now
	// Cooldown is how long a released address rests before it is handed
	// out again (stale ARP/FDB entries elsewhere). 0 means DefaultCooldown;
	// negative means none.
	Cooldown time.Duration
	// Retry is how often a request for space is repeated while Allocate
	// waits (0 means one second).
	Retry time.Duration
	// OnChange, if set, is called (without the lock held) after the
	// ownership map or the local allocations changed. It must not block.
	OnChange func()
	// IsMember, if set, says whether a name is a live member of the
	// cluster right now: IPAM state is accepted only from members, and a
	// removal record never names a live member. Nil: PeersChanged decides
	// (everyone until its first call).
	IsMember func(name string) bool

	seedSource func() uint64 // tests: deterministic seed IDs
	noSync     bool          // tests: skip fsync
}

// DefaultCooldown is how long a released address rests by default.
const DefaultCooldown = 60 * time.Second

// Request asks for an address for one interface of one container.
type Request struct {
	ID     string     // container ID (required)
	IfName string     // interface in the container
	Name   string     // container name (for DNS)
	Want   netip.Addr // a specific address, or the zero Addr
}

// Allocation is an address held by one interface of one container.
type Allocation struct {
	ID, IfName, Name string
	Prefix           netip.Prefix // the address with the block's prefix length
	Gateway          netip.Addr   // the block's gateway (GatewayPerBlock), else zero
}

// Errors callers may test with errors.Is.
var (
	// ErrNoSpace: no free address in this host's blocks and no peer gave one.
	ErrNoSpace = errors.New("no free address")
	// ErrRemoved: this host was removed from the map by rmpeer while it
	// still held allocations; it refuses to hand out more.
	ErrRemoved = errors.New("this host was removed from the IPAM map")
	// ErrSeedConflict: a peer belongs to another IPAM map and both maps
	// have handed out addresses.
	ErrSeedConflict = errors.New("conflicting IPAM maps")
)

// waitError says Allocate must wait for a peer (a block is on its way).
type waitError struct{ reason string }

func (w *waitError) Error() string { return w.reason }

type allocKey struct{ ID, IfName string }

type alloc struct {
	ID, IfName, Name string
	off              uint64
}

type outMsg struct {
	to      string // "" broadcasts
	payload []byte
	want    int64 // block of a Want request (for SendTo errors), else -1
}

// needState is one waiting request's search for a block: whom it asked
// and who refused. Each request has its own, so a new request does not
// inherit refusals from an older one (the owner may have space by now).
type needState struct {
	last     string // the peer asked last
	lastSent time.Time
	asked    map[string]time.Time
	refused  map[string]string
}

type wantState struct {
	owner   ident
	sent    time.Time
	refused string
}

// Allocator hands out addresses from the blocks this host owns and keeps
// the ownership map in step with its peers. All methods are safe for
// concurrent use: one mutex guards the state; Transport sends, OnChange and
// the waits of Allocate happen without it.
type Allocator struct {
	mu       sync.Mutex
	opts     Options
	log      hclog.Logger
	sp       *space
	path     string
	now      func() time.Time
	cooldown time.Duration
	retry    time.Duration

	self        ident
	v           *view
	used        bool
	removedSelf bool
	allocs      map[allocKey]*alloc
	byOff       map[uint64]*alloc
	blockAllocs map[uint32]int
	freed       map[uint32]map[uint64]time.Time
	removedByMe map[ident]bool
	alive       map[string]bool // nil until PeersChanged
	owned       []uint32        // blocks owned by self (cache)
	ownedOK     bool
	needs       map[allocKey]*needState // requests for space, per waiting request
	wants       map[uint32]*wantState
	fresh       map[uint32]bool      // blocks received by hand-over, not allocated from yet (surplus.go)
	asked       map[string]time.Time // when each owner was last asked for a block (surplus.go)
	conflicts   map[string]string
	dirty       bool
	// untrusted: blocks this view names as ours that were handed to us in
	// a way we could not verify (docs/ipam.md, "Hostile members"); never
	// allocated from nor given away. Persisted.
	untrusted map[uint32]bool
	pre       map[uint32]preEntry
	rejected  bool // part of the message being merged was refused
	rejects   int  // parts of messages refused (log rate limit)

	merged    map[uint64]bool // hashes of state payloads already merged (same seed)
	gen       uint64          // bumped on every change of the view (LocalState cache)
	cacheGen  uint64
	cache     []byte
	tx        *undo
	batch     bool    // inside HandleMessages: commits wait for endBatch
	batchTx   []*undo // commits of the current batch
	lastState atomic.Pointer[[]byte]
	saves     int // successful saves (tests count fsyncs)
	out       []outMsg
	bcast     delta // my writes waiting to be broadcast
	changed   chan struct{}
	notifyOut bool
}

// Open loads the allocator's state from StateDir (or seeds a new map when
// Options.Seed is set and there is no state). A corrupt or mismatching state
// file is an error naming the file; it is never reset silently.
func Open(opts Options) (*Allocator, error) {
	if opts.Self == "" || len(opts.Self) > maxNameLen {
		return nil, fmt.Errorf("ipam: the host name must be 1 to %d bytes", maxNameLen)
	}
	sp, err := newSpace(opts.Config)
	if err != nil {
		return nil, err
	}
	a := &Allocator{
		opts: opts, log: opts.Logger, sp: sp, now: opts.Now,
		cooldown: opts.Cooldown, retry: opts.Retry,
		self:        ident{Name: opts.Self},
		allocs:      map[allocKey]*alloc{},
		byOff:       map[uint64]*alloc{},
		blockAllocs: map[uint32]int{},
		freed:       map[uint32]map[uint64]time.Time{},
		removedByMe: map[ident]bool{},
		wants:       map[uint32]*wantState{},
		fresh:       map[uint32]bool{},
		asked:       map[string]time.Time{},
		needs:       map[allocKey]*needState{},
		conflicts:   map[string]string{},
		untrusted:   map[uint32]bool{},
		pre:         map[uint32]preEntry{},
		merged:      map[uint64]bool{},
		changed:     make(chan struct{}),
	}
	if a.log == nil {
		a.log = hclog.NewNullLogger()
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.cooldown == 0 {
		a.cooldown = DefaultCooldown
	}
	if a.retry <= 0 {
		a.retry = time.Second
	}
	a.v = newView(0, sp.nBlocks)
	if opts.StateDir != "" {
		a.path = filepath.Join(opts.StateDir, StateFile)
		f, err := readState(a.path)
		if err != nil {
			return nil, err
		}
		if f != nil {
			if err := a.load(f); err != nil {
				return nil, err
			}
			a.log.Info("loaded IPAM state", "seed", fmt.Sprintf("%016x", a.v.seed), "allocations", len(a.allocs), "blocks", len(a.ownedBlocks()))
			return a, nil
		}
	}
	a.self.Inc = freshInc(a.now())
	if opts.Seed {
		if err := a.seedMap(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// freshInc is the incarnation of a host starting without state: the start
// time in seconds, so that a host whose name was used before (and perhaps
// removed by rmpeer) never shares an identity with its earlier life, even
// when it first hears from a host with an old view.
func freshInc(now time.Time) uint32 {
	if s := now.Unix(); s > 0 && s < 1<<32 {
		return uint32(s)
	}
	return 1
}

// seedMap creates a new map owned entirely by this host.
func (a *Allocator) seedMap() error {
	seed := uint64(0)
	for seed == 0 {
		if a.opts.seedSource != nil {
			seed = a.opts.seedSource()
			continue
		}
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("ipam: generating a seed: %w", err)
		}
		seed = binary.BigEndian.Uint64(b[:])
	}
	a.v = newView(seed, a.sp.nBlocks)
	for i := range a.v.blocks {
		a.v.blocks[i] = entry{Ver: 1, Owner: a.self}
	}
	a.writeSelf(func(*hostRec) {})
	a.ownedOK = false
	a.log.Info("seeded a new IPAM map", "seed", fmt.Sprintf("%016x", seed), "cidr", a.sp.cidr, "blocks", a.sp.nBlocks)
	return a.save()
}

// Allocate returns the address of (r.ID, r.IfName), allocating one if it
// has none: idempotent. With r.Want it gets exactly that address or an
// error that names who holds it. When this host has no free address it
// asks a peer for a block and waits (without holding the lock) until one
// arrives or ctx ends.
func (a *Allocator) Allocate(ctx context.Context, r Request) (Allocation, error) {
	if r.ID == "" {
		return Allocation{}, errors.New("allocating: the container ID is empty")
	}
	defer func() {
		a.mu.Lock()
		delete(a.needs, allocKey{r.ID, r.IfName})
		a.mu.Unlock()
	}()
	for {
		al, ch, err := a.attempt(r)
		var w *waitError
		if !errors.As(err, &w) {
			return al, err
		}
		t := time.NewTimer(a.retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return Allocation{}, fmt.Errorf("allocating an address for %s: %s: %w", r.ID, w.reason, ctx.Err())
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

// attempt runs one allocation step; a *waitError means "ask again later".
func (a *Allocator) attempt(r Request) (Allocation, <-chan struct{}, error) {
	a.mu.Lock()
	al, err := a.tryAllocate(r)
	ch := a.changed
	a.unlockAndFlush()
	return al, ch, err
}

// Release frees the address of (id, ifname). Releasing what is not
// allocated is not an error (idempotent). The address rests for Cooldown.
func (a *Allocator) Release(id, ifname string) error {
	return a.ReleaseMany([]Allocation{{ID: id, IfName: ifname}})
}

// Close saves what is not on disk yet (views merged from peers and this
// host's own record, which are saved lazily: they can be learnt again).
// Call it when the agent stops. The allocator stays usable.
func (a *Allocator) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.dirty {
		return nil
	}
	return a.save()
}

// Lookup returns the allocation of (id, ifname).
func (a *Allocator) Lookup(id, ifname string) (Allocation, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	al, ok := a.allocs[allocKey{id, ifname}]
	if !ok {
		return Allocation{}, false
	}
	return a.allocation(al), true
}

// Allocations lists this host's allocations, sorted by address.
func (a *Allocator) Allocations() []Allocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Allocation
	for _, al := range a.sortedAllocs() {
		out = append(out, a.allocation(al))
	}
	return out
}

func (a *Allocator) sortedAllocs() []*alloc {
	out := make([]*alloc, 0, len(a.allocs))
	for _, al := range a.allocs {
		out = append(out, al)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].off < out[j].off })
	return out
}

func (a *Allocator) allocation(al *alloc) Allocation {
	out := Allocation{ID: al.ID, IfName: al.IfName, Name: al.Name,
		Prefix: netip.PrefixFrom(a.sp.addrAt(al.off), a.sp.blockBits)}
	if b := a.sp.blockOf(al.off); a.sp.hasGW[b] {
		out.Gateway = a.sp.addrAt(a.sp.gw[b])
	}
	return out
}

// notify wakes Allocate waiters and schedules OnChange. Caller holds a.mu.
func (a *Allocator) notify() {
	a.gen++
	close(a.changed)
	a.changed = make(chan struct{})
	a.notifyOut = true
}

// unlockAndFlush queues the broadcast of this host's pending writes,
// releases the lock, then sends and calls OnChange.
func (a *Allocator) unlockAndFlush() {
	if !a.bcast.empty() {
		for _, p := range splitDelta(a.v, a.sp.fp, a.self, a.viewUsed(), a.bcast, MaxBroadcast) {
			a.out = append(a.out, outMsg{payload: p, want: -1})
		}
		a.bcast = delta{}
	}
	out, cb := a.out, a.notifyOut
	a.out, a.notifyOut = nil, false
	a.mu.Unlock()
	a.send(out)
	if cb && a.opts.OnChange != nil {
		a.opts.OnChange()
	}
}

func (a *Allocator) send(out []outMsg) {
	t := a.opts.Transport
	if t == nil {
		return
	}
	for _, m := range out {
		if m.to == "" {
			t.Broadcast(m.payload)
			continue
		}
		if err := t.SendTo(m.to, m.payload); err != nil {
			a.log.Debug("sending to a peer failed", "peer", m.to, "error", err)
			if m.want >= 0 {
				a.mu.Lock()
				if w := a.wants[uint32(m.want)]; w != nil && w.owner.Name == m.to {
					w.refused = fmt.Sprintf("%s is unreachable: %v", m.to, err)
					a.notify()
				}
				a.mu.Unlock()
			}
		}
	}
}
