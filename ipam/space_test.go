package ipam

import (
	"net/netip"
	"strings"
	"testing"
)

func TestSpaceBlocks(t *testing.T) {
	sp, err := newSpace(Config{CIDR: netip.MustParsePrefix("10.0.0.0/24"), BlockBits: 26, GatewayPerBlock: true})
	if err != nil {
		t.Fatal(err)
	}
	if sp.nBlocks != 4 || sp.size != 64 {
		t.Fatalf("blocks %d size %d, want 4 and 64", sp.nBlocks, sp.size)
	}
	// With gateways every block loses its own network and broadcast
	// address (containers see the block's prefix) and its gateway.
	want := []uint32{61, 61, 61, 61}
	for b, c := range want {
		if sp.capacity[b] != c {
			t.Errorf("capacity of block %d = %d, want %d", b, sp.capacity[b], c)
		}
	}
	gws := []string{"10.0.0.1", "10.0.0.65", "10.0.0.129", "10.0.0.193"}
	for b, g := range gws {
		if got := sp.addrAt(sp.gw[b]).String(); got != g {
			t.Errorf("gateway of block %d = %s, want %s", b, got, g)
		}
	}
	if got := sp.blockPrefix(2).String(); got != "10.0.0.128/26" {
		t.Errorf("block 2 = %s", got)
	}
	if b, ok := sp.blockIndex(netip.MustParsePrefix("10.0.0.192/26")); !ok || b != 3 {
		t.Errorf("blockIndex = %d %v", b, ok)
	}
	if _, ok := sp.blockIndex(netip.MustParsePrefix("10.0.0.192/27")); ok {
		t.Error("a /27 is not a block")
	}
	for _, s := range []string{"10.0.0.0", "10.0.0.255", "10.0.0.1", "10.0.0.63", "10.0.0.64", "10.0.0.65"} {
		off, _ := sp.offsetOf(netip.MustParseAddr(s))
		if sp.usable(off) {
			t.Errorf("%s must not be usable", s)
		}
	}
}

func TestSpaceSmallBlocksAndExclusions(t *testing.T) {
	sp, err := newSpace(Config{CIDR: netip.MustParsePrefix("192.168.1.0/24"), BlockBits: 30,
		Exclude: []netip.Prefix{netip.MustParsePrefix("192.168.1.4/30"), netip.MustParsePrefix("192.168.1.9/32"),
			netip.MustParsePrefix("192.168.2.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	if sp.nBlocks != 64 {
		t.Fatalf("nBlocks = %d", sp.nBlocks)
	}
	want := map[uint32]uint32{0: 3, 1: 0, 2: 3, 3: 4, 63: 3}
	for b, c := range want {
		if sp.capacity[b] != c {
			t.Errorf("capacity of block %d = %d, want %d", b, sp.capacity[b], c)
		}
	}
	if sp.hasGW[0] {
		t.Error("no gateways without GatewayPerBlock")
	}
	if got := sp.nextUsable(8, 11, true, 2); sp.addrAt(got).String() != "192.168.1.8" {
		t.Errorf("first usable of block 2 = %s", sp.addrAt(got))
	}
	if got := sp.nextUsable(9, 11, true, 2); sp.addrAt(got).String() != "192.168.1.10" {
		t.Errorf("next usable after .9 = %s", sp.addrAt(got))
	}
}

func TestSpaceIPv6(t *testing.T) {
	sp, err := newSpace(Config{CIDR: netip.MustParsePrefix("fd00:1::/96"), GatewayPerBlock: true})
	if err != nil {
		t.Fatal(err)
	}
	if sp.blockBits != 112 || sp.nBlocks != 65536 {
		t.Fatalf("blockBits %d nBlocks %d", sp.blockBits, sp.nBlocks)
	}
	a := netip.MustParseAddr("fd00:1::3:5")
	off, ok := sp.offsetOf(a)
	if !ok || sp.addrAt(off) != a {
		t.Fatalf("round trip of %s: %d %v -> %s", a, off, ok, sp.addrAt(off))
	}
	if got := sp.blockPrefix(sp.blockOf(off)).String(); got != "fd00:1::3:0/112" {
		t.Errorf("block of %s = %s", a, got)
	}
	if sp.capacity[0] != 65536-2 || sp.capacity[1] != 65536-2 {
		t.Errorf("capacities %d %d (network address and gateway; no broadcast in IPv6)", sp.capacity[0], sp.capacity[1])
	}
	if _, ok := sp.offsetOf(netip.MustParseAddr("10.0.0.1")); ok {
		t.Error("an IPv4 address is not in an IPv6 space")
	}
}

func TestSpaceErrors(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "not set"},
		{Config{CIDR: netip.MustParsePrefix("10.0.0.1/24")}, "host bits"},
		{Config{CIDR: netip.MustParsePrefix("10.0.0.0/24"), BlockBits: 31}, "too small"},
		{Config{CIDR: netip.MustParsePrefix("10.0.0.0/24"), BlockBits: 20}, "larger than the CIDR"},
		{Config{CIDR: netip.MustParsePrefix("10.0.0.0/8"), BlockBits: 26}, "at most 65536"},
		{Config{CIDR: netip.MustParsePrefix("fd00::/64"), BlockBits: 64}, "too large"},
	}
	for _, c := range cases {
		_, err := newSpace(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want it to mention %q", c.cfg, err, c.want)
		}
	}
}
