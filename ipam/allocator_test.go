package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func single(t *testing.T, cfg Config, cooldown time.Duration) (*Allocator, *clock, string) {
	t.Helper()
	c := newClock()
	dir := t.TempDir()
	a, err := Open(Options{Self: "h1", Config: cfg, StateDir: dir, Seed: true, Now: c.Now, Cooldown: cooldown, noSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return a, c, dir
}

func TestAllocateIsIdempotentAndDistinct(t *testing.T) {
	a, _, _ := single(t, Config{CIDR: testCIDR, BlockBits: 26, GatewayPerBlock: true}, 0)
	seen := map[netip.Addr]string{}
	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("c%d", i)
		al, err := a.Allocate(bg, Request{ID: id, IfName: "eth0", Name: "n" + id})
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if other, dup := seen[al.Prefix.Addr()]; dup {
			t.Fatalf("%s got %s, already %s's", id, al.Prefix.Addr(), other)
		}
		seen[al.Prefix.Addr()] = id
		if al.Prefix.Bits() != 26 || !al.Gateway.IsValid() || al.Gateway == al.Prefix.Addr() {
			t.Fatalf("allocation %+v", al)
		}
		again, err := a.Allocate(bg, Request{ID: id, IfName: "eth0"})
		if err != nil || again != al {
			t.Fatalf("second allocate of %s: %+v %v, want %+v", id, again, err, al)
		}
		if got, ok := a.Lookup(id, "eth0"); !ok || got != al {
			t.Fatalf("lookup %s: %+v %v", id, got, ok)
		}
	}
	if first := a.Allocations()[0].Prefix.Addr(); first != netip.MustParseAddr("10.213.0.2") {
		t.Errorf("first address %s (network .0 and gateway .1 are skipped)", first)
	}
	// Same container, other interface: another address.
	x, _ := a.Allocate(bg, Request{ID: "c0", IfName: "eth1"})
	y, _ := a.Lookup("c0", "eth0")
	if x.Prefix == y.Prefix {
		t.Fatal("two interfaces share an address")
	}
}

func TestExhaustionAndGatewaysAndBroadcast(t *testing.T) {
	a, _, _ := single(t, Config{CIDR: testCIDR, BlockBits: 26, GatewayPerBlock: true}, 0)
	n := 0
	for {
		al, err := a.Allocate(bg, Request{ID: fmt.Sprint(n)})
		if err != nil {
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("error %v, want ErrNoSpace", err)
			}
			break
		}
		addr := al.Prefix.Addr()
		if addr == al.Gateway || addr.String() == "10.213.0.0" || addr.String() == "10.213.0.255" {
			t.Fatalf("handed out %s", addr)
		}
		n++
	}
	if n != 4*61 {
		t.Fatalf("%d addresses, want 244 (4 blocks of 64 less network, broadcast and gateway)", n)
	}
	if p := a.Check(); len(p) != 0 {
		t.Fatalf("check: %v", p)
	}
}

func TestExclusionsAreNeverHandedOut(t *testing.T) {
	ex := []netip.Prefix{netip.MustParsePrefix("10.213.0.0/25"), netip.MustParsePrefix("10.213.0.200/29")}
	a, _, _ := single(t, Config{CIDR: testCIDR, BlockBits: 28, Exclude: ex}, 0)
	n := 0
	for {
		al, err := a.Allocate(bg, Request{ID: fmt.Sprint(n)})
		if err != nil {
			break
		}
		for _, p := range ex {
			if p.Contains(al.Prefix.Addr()) {
				t.Fatalf("excluded %s handed out", al.Prefix.Addr())
			}
		}
		if al.Gateway.IsValid() {
			t.Fatal("gateway without GatewayPerBlock")
		}
		n++
	}
	if n != 128-8-1 {
		t.Fatalf("%d addresses, want 119", n)
	}
	_, err := a.Allocate(bg, Request{ID: "w", Want: netip.MustParseAddr("10.213.0.201")})
	if err == nil || !strings.Contains(err.Error(), "excluded") {
		t.Fatalf("want excluded: %v", err)
	}
}

func TestCooldownAndLeastRecentlyFreed(t *testing.T) {
	cfg := Config{CIDR: netip.MustParsePrefix("10.213.0.0/28"), BlockBits: 28}
	a, c, _ := single(t, cfg, time.Minute)
	// 14 usable addresses (.1 - .14).
	var addrs []netip.Addr
	for i := 0; i < 14; i++ {
		al, err := a.Allocate(bg, Request{ID: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, al.Prefix.Addr())
	}
	if err := a.Release("3", ""); err != nil {
		t.Fatal(err)
	}
	c.Add(10 * time.Second)
	if err := a.Release("5", ""); err != nil {
		t.Fatal(err)
	}
	if err := a.Release("nope", ""); err != nil {
		t.Fatalf("releasing the unknown is not an error: %v", err)
	}
	_, err := a.Allocate(bg, Request{ID: "x"})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "cooling down") {
		t.Fatalf("during cool-down: %v", err)
	}
	c.Add(55 * time.Second) // 3 rested 65 s, 5 rested 55 s
	al, err := a.Allocate(bg, Request{ID: "x"})
	if err != nil || al.Prefix.Addr() != addrs[3] {
		t.Fatalf("after 3's cool-down got %v %v, want %s", al.Prefix.Addr(), err, addrs[3])
	}
	c.Add(10 * time.Second)
	if err := a.Release("7", ""); err != nil {
		t.Fatal(err)
	}
	c.Add(2 * time.Minute)
	// Both 5 and 7 rested: 5 was freed first.
	al, _ = a.Allocate(bg, Request{ID: "y"})
	if al.Prefix.Addr() != addrs[5] {
		t.Fatalf("got %s, want the least recently freed %s", al.Prefix.Addr(), addrs[5])
	}
}

func TestFreshAddressesBeforeReleasedOnes(t *testing.T) {
	a, c, _ := single(t, Config{CIDR: testCIDR, BlockBits: 28}, time.Second)
	first, _ := a.Allocate(bg, Request{ID: "a"})
	_ = a.Release("a", "")
	c.Add(time.Hour)
	next, _ := a.Allocate(bg, Request{ID: "b"})
	if next.Prefix.Addr() == first.Prefix.Addr() {
		t.Fatalf("a released address came back while fresh ones remain")
	}
}

func TestWantOwnBlock(t *testing.T) {
	a, c, _ := single(t, Config{CIDR: testCIDR, BlockBits: 26, GatewayPerBlock: true}, 0)
	w := netip.MustParseAddr("10.213.0.77")
	al, err := a.Allocate(bg, Request{ID: "a", Want: w})
	if err != nil || al.Prefix.Addr() != w || al.Gateway.String() != "10.213.0.65" {
		t.Fatalf("want: %+v %v", al, err)
	}
	checks := []struct {
		addr, want string
	}{
		{"10.213.0.77", "already allocated to container a"},
		{"10.213.1.5", "outside"},
		{"10.213.0.65", "gateway"},
		{"10.213.0.64", "excluded"},
		{"10.213.0.255", "excluded"},
	}
	for _, ck := range checks {
		_, err := a.Allocate(bg, Request{ID: "b", Want: netip.MustParseAddr(ck.addr)})
		if err == nil || !strings.Contains(err.Error(), ck.want) {
			t.Errorf("want %s: %v (should mention %q)", ck.addr, err, ck.want)
		}
	}
	if _, err := a.Allocate(bg, Request{ID: "a", Want: netip.MustParseAddr("10.213.0.78")}); err == nil {
		t.Error("a second Want for an allocated interface must fail")
	}
	// An explicit request may take an address that is cooling down.
	_ = a.Release("a", "")
	c.Add(time.Second)
	if al, err := a.Allocate(bg, Request{ID: "c", Want: w}); err != nil || al.Prefix.Addr() != w {
		t.Fatalf("want a cooling address: %v", err)
	}
}

func TestNoMapYetWaits(t *testing.T) {
	c := newClock()
	a, err := Open(Options{Self: "h2", Config: Config{CIDR: testCIDR}, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	defer cancel()
	_, err = a.Allocate(ctx, Request{ID: "x"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not received an IPAM map") {
		t.Fatalf("got %v", err)
	}
	if a.SeedID() != 0 || a.Used() {
		t.Fatal("unseeded host claims a map")
	}
	if p := a.Check(); len(p) != 1 {
		t.Fatalf("check: %v", p)
	}
}

func TestConcurrentAllocations(t *testing.T) {
	a, _, _ := single(t, Config{CIDR: netip.MustParsePrefix("10.213.0.0/22"), BlockBits: 26}, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[netip.Addr]bool{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				al, err := a.Allocate(bg, Request{ID: fmt.Sprintf("%d-%d", g, i)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[al.Prefix.Addr()] {
					t.Errorf("duplicate %s", al.Prefix.Addr())
				}
				seen[al.Prefix.Addr()] = true
				mu.Unlock()
				if i%3 == 0 {
					_ = a.Release(fmt.Sprintf("%d-%d", g, i), "")
				}
				_ = a.Blocks()
				_ = a.Check()
			}
		}(g)
	}
	wg.Wait()
}

func TestPersistenceRoundTrip(t *testing.T) {
	cfg := Config{CIDR: testCIDR, BlockBits: 28, GatewayPerBlock: true}
	a, c, dir := single(t, cfg, time.Minute)
	for i := 0; i < 20; i++ {
		if _, err := a.Allocate(bg, Request{ID: fmt.Sprint(i), IfName: "eth0", Name: fmt.Sprint("name", i)}); err != nil {
			t.Fatal(err)
		}
	}
	_ = a.Release("4", "eth0")
	before, digest, seed := a.Allocations(), a.Digest(), a.SeedID()
	b, err := Open(Options{Self: "h1", Config: cfg, StateDir: dir, Seed: true, Now: c.Now, Cooldown: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(b.Allocations()) != fmt.Sprint(before) || b.Digest() != digest || b.SeedID() != seed || !b.Used() {
		t.Fatalf("state changed across a restart:\n%v\n%v", before, b.Allocations())
	}
	// The cool-down survives the restart: 4's address is not reused.
	al, _ := b.Allocate(bg, Request{ID: "new"})
	if al.Prefix.Addr() == before[3].Prefix.Addr() {
		t.Fatal("cooling address reused after restart")
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(matches) != 0 {
		t.Fatalf("temporary files left: %v", matches)
	}
}

func TestCorruptStateIsAnError(t *testing.T) {
	cfg := Config{CIDR: testCIDR, BlockBits: 28}
	a, c, dir := single(t, cfg, 0)
	_, _ = a.Allocate(bg, Request{ID: "x"})
	path := filepath.Join(dir, StateFile)
	good, _ := os.ReadFile(path)
	cases := map[string][]byte{
		"corrupt":   good[:len(good)/2],
		"format 9":  []byte(strings.Replace(string(good), `"format":1`, `"format":9`, 1)),
		"other cfg": good,
	}
	for name, data := range cases {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		opts := Options{Self: "h1", Config: cfg, StateDir: dir, Seed: true, Now: c.Now}
		if name == "other cfg" {
			opts.Config.BlockBits = 26
		}
		_, err := Open(opts)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v does not name %s", name, err, path)
		}
		if after, _ := os.ReadFile(path); string(after) != string(data) {
			t.Errorf("%s: the file was modified", name)
		}
	}
	_ = os.WriteFile(path, good, 0o600)
	if _, err := Open(Options{Self: "h9", Config: cfg, StateDir: dir, Now: c.Now}); err == nil || !strings.Contains(err.Error(), `belongs to host "h1"`) {
		t.Errorf("other host name: %v", err)
	}
}

func TestPersistFailureRollsBack(t *testing.T) {
	cfg := Config{CIDR: testCIDR, BlockBits: 28}
	a, _, dir := single(t, cfg, 0)
	al, _ := a.Allocate(bg, Request{ID: "x"})
	// A non-empty directory where the file goes makes the rename fail,
	// for root too.
	path := filepath.Join(dir, StateFile)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Allocate(bg, Request{ID: "y"}); err == nil {
		t.Fatal("allocation succeeded without being persisted")
	}
	if _, ok := a.Lookup("y", ""); ok {
		t.Fatal("unpersisted allocation kept")
	}
	if err := a.Release("x", ""); err == nil {
		t.Fatal("release succeeded without being persisted")
	}
	if got, ok := a.Lookup("x", ""); !ok || got != al {
		t.Fatal("failed release lost the allocation")
	}
}
