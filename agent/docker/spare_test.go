package docker

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/ipam"
)

// startSpares serves a flat-mode plugin with spares and makes one request,
// which starts the spare pool.
func startSpares(t *testing.T) (*fakeBackend, *Plugin, client, string) {
	t.Helper()
	f := newFake(flatSpace)
	p, c := startPluginWith(t, Options{Backend: f, Spare: true})
	poolID := pool{Subnet: flatSpace.Subnet, Range: flatSpace.Range}.id()
	var ar ipam.RequestAddressResponse
	c.ok("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: poolID}, &ar)
	return f, p, c, poolID
}

// heldSpares waits for the pool to be full and returns its addresses.
func heldSpares(t *testing.T, p *Plugin) map[netip.Addr]bool {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.epMu.Lock()
		out := map[netip.Addr]bool{}
		for _, s := range p.sp.held {
			out[s.lease.Addr] = true
		}
		p.epMu.Unlock()
		if len(out) == spareCount {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spares held, want %d", len(out), spareCount)
		}
		time.Sleep(time.Millisecond)
	}
}

// spareOf waits for the fake to hold a spare and returns it.
func spareOf(t *testing.T, f *fakeBackend, not netip.Addr) Lease {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range f.Leases() {
			if strings.HasPrefix(l.ID, sparePrefix) && l.Addr != not {
				return l
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no spare address held; leases %+v", f.Leases())
	return Lease{}
}

// With Spare, an earlier agent's spare is released at start, none is made
// before Docker asks; then a request without --ip gets the address held
// ahead and a new spare is allocated behind it; --ip is allocated as asked;
// the sweep leaves the spare alone; an idle plugin drops it.
func TestSpareHandedOutAndRefilled(t *testing.T) {
	f := newFake(flatSpace)
	if _, err := f.Allocate(t.Context(), sparePrefix+"left-by-an-earlier-agent", netip.MustParseAddr("172.16.44.99")); err != nil {
		t.Fatal(err)
	}
	p, c := startPluginWith(t, Options{Backend: f, Spare: true})
	if len(f.Leases()) != 0 {
		t.Fatalf("leases before Docker asked for anything: %+v (the earlier spare is released, no new one made)", f.Leases())
	}
	poolID := pool{Subnet: flatSpace.Subnet, Range: flatSpace.Range}.id()
	var ar ipam.RequestAddressResponse
	c.ok("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: poolID}, &ar)
	spareAddrs := heldSpares(t, p)
	c.ok("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: poolID}, &ar)
	first, err := netip.ParsePrefix(ar.Address)
	if err != nil || first.Bits() != 16 || !spareAddrs[first.Addr()] {
		t.Fatalf("got %s, the spares were %v", ar.Address, spareAddrs)
	}
	held, _ := f.Holder(first.Addr())
	if !strings.HasPrefix(held.ID, pendingPrefix) {
		t.Fatalf("the handed spare is held by %q, want a pending id", held.ID)
	}
	second := spareOf(t, f, first.Addr())
	c.ok("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: poolID, Address: "172.16.44.50"}, &ar)
	if ar.Address != "172.16.44.50/16" {
		t.Fatalf("--ip got %s", ar.Address)
	}
	if l, ok := f.Lookup(second.ID); !ok || l.Addr != second.Addr {
		t.Fatalf("an --ip request took the spare %+v", second)
	}
	p.o.Endpoints = &fakeEndpoints{eps: map[string]bool{}}
	s := p.sweep(p.sweep(nil))
	if s[second.ID] {
		t.Fatal("the sweep suspects the spare")
	}
	if _, ok := f.Lookup(second.ID); !ok {
		t.Fatal("the sweep released the spare")
	}
	p.epMu.Lock()
	p.sp.lastAsked = time.Now().Add(-SpareIdle - time.Second)
	p.epMu.Unlock()
	p.refreshSpares()
	if _, ok := f.Lookup(second.ID); ok {
		t.Fatal("an idle plugin kept its spare")
	}
}

// A spare past SpareMaxAge is not handed out: the request allocates anew.
func TestStaleSpareNotUsed(t *testing.T) {
	f, p, c, poolID := startSpares(t)
	var ar ipam.RequestAddressResponse
	sp := spareOf(t, f, netip.Addr{})
	p.epMu.Lock()
	for i := range p.sp.held {
		p.sp.held[i].at = time.Now().Add(-SpareMaxAge)
	}
	p.epMu.Unlock()
	c.ok("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: poolID}, &ar)
	if ar.Address == sp.Addr.String()+"/16" {
		t.Fatalf("a stale spare %s was handed out", sp.Addr)
	}
}

// A request that finds no spare ready while a probe for one is under way
// waits for it instead of probing an address of its own.
func TestSpareWaitsForRefillUnderWay(t *testing.T) {
	f, p, c, poolID := startSpares(t)
	var ar ipam.RequestAddressResponse
	heldSpares(t, p)
	f.mu.Lock()
	f.allocDelay = 200 * time.Millisecond
	f.mu.Unlock()
	for i := 0; i < spareCount; i++ { // drain the pool; refills start
		c.ok("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: poolID}, &ar)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.epMu.Lock()
		n, inflight := len(p.sp.held), p.sp.inflight
		p.epMu.Unlock()
		if n == 0 && inflight > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refill under way with an empty pool (held %d, in flight %d)", n, inflight)
		}
		time.Sleep(time.Millisecond)
	}
	c.ok("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: poolID}, &ar)
	f.mu.Lock()
	defer f.mu.Unlock()
	pending := 0
	for _, l := range f.allocated {
		if strings.HasPrefix(l.ID, pendingPrefix) {
			pending++
		}
	}
	if pending != 1 {
		t.Fatalf("%d allocations under a pending id, want 1 (only the first request's): %v", pending, f.allocated)
	}
}

// --ip of an address a spare holds gets it: at once when the spare is
// fresh, after a new probe (release, allocate) when it is stale.
func TestIPOfASpare(t *testing.T) {
	f, p, c, poolID := startSpares(t)
	var ar ipam.RequestAddressResponse
	heldSpares(t, p)
	sp := spareOf(t, f, netip.Addr{})
	c.ok("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: poolID, Address: sp.Addr.String()}, &ar)
	if ar.Address != sp.Addr.String()+"/16" {
		t.Fatalf("--ip %s (a fresh spare) got %s", sp.Addr, ar.Address)
	}
	heldSpares(t, p)
	sp = spareOf(t, f, sp.Addr)
	p.epMu.Lock()
	for i := range p.sp.held {
		p.sp.held[i].at = time.Now().Add(-SpareMaxAge)
	}
	p.epMu.Unlock()
	before := len(f.allocated)
	c.ok("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: poolID, Address: sp.Addr.String()}, &ar)
	if ar.Address != sp.Addr.String()+"/16" {
		t.Fatalf("--ip %s (a stale spare) got %s", sp.Addr, ar.Address)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	probed := false // allocated anew: by this request, or by a refill it then took
	for _, l := range f.allocated[before:] {
		probed = probed || l.Addr == sp.Addr
	}
	if !probed {
		t.Fatalf("the stale spare %s was handed out without a new allocation: %v", sp.Addr, f.allocated[before:])
	}
}
