package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// bus connects allocators in memory; messages wait in a queue until pump.
type bus struct {
	mu    sync.Mutex
	nodes map[string]*Allocator
	down  map[string]bool
	queue []busMsg
}

type busMsg struct {
	from, to string
	payload  []byte
}

func newBus() *bus { return &bus{nodes: map[string]*Allocator{}, down: map[string]bool{}} }

type busTransport struct {
	b    *bus
	from string
}

func (t busTransport) Broadcast(p []byte) {
	if len(p) > MaxBroadcast {
		panic(fmt.Sprintf("broadcast of %d bytes", len(p)))
	}
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	for n := range t.b.nodes {
		if n != t.from {
			t.b.queue = append(t.b.queue, busMsg{t.from, n, append([]byte(nil), p...)})
		}
	}
}

func (t busTransport) SendTo(to string, p []byte) error {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	if _, ok := t.b.nodes[to]; !ok || t.b.down[to] {
		return fmt.Errorf("%s is unreachable", to)
	}
	t.b.queue = append(t.b.queue, busMsg{t.from, to, append([]byte(nil), p...)})
	return nil
}

// pump delivers queued messages (and those they cause) to live nodes.
func (b *bus) pump(t testing.TB) {
	t.Helper()
	for i := 0; i < 10000; i++ {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.mu.Unlock()
			return
		}
		m := b.queue[0]
		b.queue = b.queue[1:]
		dst, down := b.nodes[m.to], b.down[m.to] || b.down[m.from]
		b.mu.Unlock()
		if dst != nil && !down {
			dst.HandleMessage(m.from, m.payload)
		}
	}
	t.Fatal("bus did not go quiet")
}

// sync runs a push-pull between every pair of live nodes.
func (b *bus) sync(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	var live []*Allocator
	for n, a := range b.nodes {
		if !b.down[n] {
			live = append(live, a)
		}
	}
	b.mu.Unlock()
	for _, x := range live {
		for _, y := range live {
			if x != y {
				_ = y.MergeRemoteState(x.self.Name, x.LocalState())
			}
		}
	}
	b.pump(t)
}

func (b *bus) alive() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for n := range b.nodes {
		if !b.down[n] {
			out = append(out, n)
		}
	}
	return out
}

func (b *bus) peersChanged() {
	for _, n := range b.alive() {
		b.mu.Lock()
		a := b.nodes[n]
		b.mu.Unlock()
		a.PeersChanged(b.alive())
	}
}

var testCIDR = netip.MustParsePrefix("10.213.0.0/24")

type hostOpts struct {
	seed     bool
	dir      string
	cfg      *Config
	cooldown time.Duration
}

// open starts an allocator on the bus.
func (b *bus) open(t testing.TB, name string, c *clock, o hostOpts) *Allocator {
	t.Helper()
	cfg := Config{CIDR: testCIDR, BlockBits: 28, GatewayPerBlock: true}
	if o.cfg != nil {
		cfg = *o.cfg
	}
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	n := uint64(0)
	for _, ch := range name {
		n = n*131 + uint64(ch)
	}
	a, err := Open(Options{Self: name, Config: cfg, StateDir: o.dir, Seed: o.seed,
		Transport: busTransport{b, name}, Now: c.Now, Cooldown: o.cooldown, Retry: time.Second,
		seedSource: func() uint64 { n++; return n*0x9E3779B97F4A7C15 | 1 }, noSync: true})
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	b.mu.Lock()
	b.nodes[name] = a
	delete(b.down, name)
	b.mu.Unlock()
	return a
}

// alloc allocates, pumping the bus while the allocator waits for a peer.
func (b *bus) alloc(t testing.TB, a *Allocator, c *clock, r Request) (Allocation, error) {
	t.Helper()
	for i := 0; i < 50; i++ {
		al, _, err := a.attempt(r)
		var w *waitError
		if !errors.As(err, &w) {
			return al, err
		}
		b.pump(t)
		c.Add(time.Second)
	}
	return Allocation{}, fmt.Errorf("still waiting after 50 rounds")
}

func mustAlloc(t testing.TB, b *bus, a *Allocator, c *clock, id string) Allocation {
	t.Helper()
	al, err := b.alloc(t, a, c, Request{ID: id, IfName: "eth0"})
	if err != nil {
		t.Fatalf("allocating %s on %s: %v", id, a.self.Name, err)
	}
	return al
}

var bg = context.Background()
