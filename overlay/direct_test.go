package overlay

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

func TestDirectReaches(t *testing.T) {
	d := Direct{UnderlayDevice: "eth0", DirectRouting: true, Connected: []netip.Prefix{
		netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("2001:db8::1/64"),
		netip.PrefixFrom(netip.AddrFrom16(netip.MustParseAddr("192.0.2.1").As16()), 120)}} // mapped 192.0.2.0/24
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"198.18.0.2", true}, {"198.18.0.254", true}, {"198.18.1.2", false},
		{"198.18.0.0", false}, // the network address is nobody
		{"2001:db8::9", true}, {"2001:db8:1::9", false},
		{"192.0.2.7", true}, {"::ffff:198.18.0.3", true},
	} {
		if got := d.Reaches(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("Reaches(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
	d.DirectRouting = false
	if d.Reaches(netip.MustParseAddr("198.18.0.2")) {
		t.Error("reaches a peer with direct routing off")
	}
}

func TestDirectCheckRoutesAndLinks(t *testing.T) {
	if err := (Direct{DirectRouting: true}).Check(); err == nil {
		t.Error("direct routing without an underlay device accepted")
	}
	if err := (Direct{UnderlayDevice: "bad name"}).Check(); err == nil {
		t.Error("bad underlay device name accepted")
	}
	if err := (Direct{UnderlayDevice: "eth0", DirectRouting: true, Connected: []netip.Prefix{{}}}).Check(); err == nil {
		t.Error("invalid connected subnet accepted")
	}
	if err := (Direct{UnderlayDevice: "eth0"}).Check(); err != nil {
		t.Errorf("off with a device: %v", err)
	}
	d := Direct{UnderlayDevice: "eth0", DirectRouting: true}
	if got := d.RouteLinks("flatmesh.wg"); !slices.Equal(got, []string{"flatmesh.wg", "eth0"}) {
		t.Errorf("route links %v", got)
	}
	if got := (Direct{}).RouteLinks("flatmesh.wg"); !slices.Equal(got, []string{"flatmesh.wg"}) {
		t.Errorf("route links without underlay %v", got)
	}
	br, err := DesiredBridge(BridgeOptions{Name: "flatmesh0", MTU: 1440, Blocks: []netip.Prefix{netip.MustParsePrefix("10.213.0.0/26")}})
	if err != nil {
		t.Fatal(err)
	}
	got := d.Routes(br, netip.MustParseAddr("::ffff:198.18.0.2"), []netip.Prefix{netip.MustParsePrefix("10.213.0.64/26")})
	want := []kernel.Route{{Dst: netip.MustParsePrefix("10.213.0.64/26"), Gw: netip.MustParseAddr("198.18.0.2"), Dev: "eth0",
		Src: netip.MustParseAddr("10.213.0.1")}}
	if !slices.Equal(got, want) {
		t.Errorf("routes %v, want %v", got, want)
	}
}
