package overlay

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

func TestMTU(t *testing.T) {
	cases := []struct {
		underlay int
		mode     string
		v6       bool
		want     int
	}{
		{1500, ModeVXLAN, false, 1450},
		{1500, ModeVXLAN, true, 1430},
		{1500, ModeWireGuard, false, 1440},
		{1500, ModeWireGuard, true, 1420},
		{9000, ModeVXLAN, false, 8950},
		{1500, ModeFlat, false, 1500},
		{1500, "geneve", false, 0},
		{600, ModeVXLAN, false, 0},
	}
	for _, c := range cases {
		if got := MTU(c.underlay, c.mode, c.v6); got != c.want {
			t.Errorf("MTU(%d, %s, v6=%t) = %d, want %d", c.underlay, c.mode, c.v6, got, c.want)
		}
	}
}

func TestResolveMTU(t *testing.T) {
	got, err := ResolveMTU(MTUOptions{Mode: ModeVXLAN, UnderlayMTU: 1500})
	if err != nil || got != 1450 {
		t.Fatalf("computed: %d %v", got, err)
	}
	if got, err = ResolveMTU(MTUOptions{Mode: ModeVXLAN, UnderlayMTU: 1500, Override: 1400}); err != nil || got != 1400 {
		t.Fatalf("override: %d %v", got, err)
	}
	bad := []struct {
		o   MTUOptions
		msg string
	}{
		{MTUOptions{Mode: ModeVXLAN, Override: 100}, "out of range 576-65535"},
		{MTUOptions{Mode: ModeVXLAN, IPv6Overlay: true, Override: 1200}, "out of range 1280-65535"},
		{MTUOptions{Mode: ModeVXLAN}, "underlay mtu unknown"},
		{MTUOptions{Mode: ModeVXLAN, UnderlayMTU: 1300, IPv6Overlay: true}, "leaves 1250"},
		{MTUOptions{Mode: "x", UnderlayMTU: 1500}, `unknown mode "x"`},
	}
	for _, b := range bad {
		if _, err := ResolveMTU(b.o); err == nil || !strings.Contains(err.Error(), b.msg) {
			t.Errorf("%+v: error %v, want %q", b.o, err, b.msg)
		}
	}
}

func TestGateway(t *testing.T) {
	for block, want := range map[string]string{
		"10.213.0.64/26":  "10.213.0.65",
		"10.213.0.70/26":  "10.213.0.65",
		"10.0.0.0/30":     "10.0.0.1",
		"fd13:0:0:1::/64": "fd13:0:0:1::1",
	} {
		got, err := Gateway(netip.MustParsePrefix(block))
		if err != nil || got.String() != want {
			t.Errorf("%s: %s %v, want %s", block, got, err, want)
		}
	}
	for _, block := range []string{"10.0.0.0/31", "10.0.0.1/32", "fd00::/127"} {
		if _, err := Gateway(netip.MustParsePrefix(block)); err == nil || !strings.Contains(err.Error(), "too small") {
			t.Errorf("%s: %v", block, err)
		}
	}
}

func TestDeriveMAC(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.1")
	if got := DeriveMAC(MACKindVTEP, a).String(); got != "0e:fd:c6:12:00:01" {
		t.Fatalf("ipv4 vtep mac %s", got)
	}
	if got := BridgeMAC(netip.AddrFrom16(a.As16())).String(); got != "0e:fc:c6:12:00:01" {
		t.Fatalf("mapped ipv4 bridge mac %s", got)
	}
	v6a, v6b := DeriveMAC(MACKindVTEP, netip.MustParseAddr("fd00::1")), DeriveMAC(MACKindVTEP, netip.MustParseAddr("fd00::2"))
	if v6a.String() == v6b.String() || v6a.String() != DeriveMAC(MACKindVTEP, netip.MustParseAddr("fd00::1")).String() {
		t.Fatalf("ipv6 macs not deterministic and distinct: %s %s", v6a, v6b)
	}
	for _, m := range [][]byte{v6a, v6b} {
		if m[0]&1 != 0 || m[0]&2 == 0 {
			t.Fatalf("%x is not a locally administered unicast mac", m)
		}
	}
}

func TestDesiredBridge(t *testing.T) {
	b, err := DesiredBridge(BridgeOptions{MTU: 1450, Blocks: []netip.Prefix{
		netip.MustParsePrefix("10.213.1.0/26"), netip.MustParsePrefix("10.213.0.64/26"), netip.MustParsePrefix("fd13::/64"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if b.Spec.Name != DefaultBridge || b.Spec.MTU != 1450 {
		t.Fatalf("spec %+v", b.Spec)
	}
	want := []kernel.Addr{
		{Dev: DefaultBridge, Prefix: netip.MustParsePrefix("10.213.0.65/26")},
		{Dev: DefaultBridge, Prefix: netip.MustParsePrefix("10.213.1.1/26")},
		{Dev: DefaultBridge, Prefix: netip.MustParsePrefix("fd13::1/64")},
	}
	if len(b.Addrs) != len(want) {
		t.Fatalf("addrs %v", b.Addrs)
	}
	for i := range want {
		if b.Addrs[i] != want[i] {
			t.Errorf("addr %d = %v, want %v", i, b.Addrs[i], want[i])
		}
	}
	if g := b.FirstGateway(true); g.String() != "10.213.0.65" {
		t.Errorf("first v4 gateway %s", g)
	}
	if g := b.FirstGateway(false); g.String() != "fd13::1" {
		t.Errorf("first v6 gateway %s", g)
	}
	if _, err := DesiredBridge(BridgeOptions{Blocks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("10.0.0.64/26")}}); err == nil ||
		!strings.Contains(err.Error(), "overlap") {
		t.Errorf("overlap: %v", err)
	}
	if _, err := DesiredBridge(BridgeOptions{Name: "this-name-is-too-long"}); err == nil {
		t.Error("long bridge name accepted")
	}
	empty, err := DesiredBridge(BridgeOptions{MTU: 1450})
	if err != nil || len(empty.Addrs) != 0 || empty.FirstGateway(true).IsValid() {
		t.Errorf("no blocks: %+v %v", empty, err)
	}
}
