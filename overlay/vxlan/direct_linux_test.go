package vxlan

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
	"github.com/flatmesh/flatmesh/overlay"
)

// TestRootDirectApplyAndRemove applies a direct-routing state on a host
// without blocks (so its routes have no source address that would take
// them away with the bridge), checks the route via the peer's underlay,
// that a second pass plans nothing, and that RemoveDirect deletes only
// our routes on the underlay link.
func TestRootDirectApplyAndRemove(t *testing.T) {
	kerneltest.RequireRoot(t)
	a, b := kerneltest.Netns(t, "fmkd"), kerneltest.Netns(t, "fmkd")
	kerneltest.Veth(t, a, "eth0", b, "eth0")
	kerneltest.Run(t, "ip", "-n", a, "addr", "add", "198.18.0.1/24", "dev", "eth0")
	kerneltest.Run(t, "ip", "-n", a, "link", "set", "eth0", "up")
	kerneltest.Run(t, "ip", "-n", a, "route", "add", "192.0.2.0/24", "via", "198.18.0.9", "dev", "eth0") // not ours
	ns, err := kernel.OpenNS(kerneltest.NetnsPath(a))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Close)
	self := Node{Name: "a", Underlay: netip.MustParseAddr("198.18.0.1")}
	peer := Node{Name: "b", Direct: true, Underlay: netip.MustParseAddr("198.18.0.2"), VTEPMAC: VTEPMAC(netip.MustParseAddr("198.18.0.2")),
		Blocks: []netip.Prefix{netip.MustParsePrefix("10.213.0.64/26")}}
	opts := testOpts
	opts.MTU, opts.UnderlayDevice, opts.DirectRouting = 1450, "eth0", true
	opts.Connected = []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")}
	st, err := Desired(self, []Node{peer}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(ns, st); err != nil {
		t.Fatal(err)
	}
	if got := kerneltest.NsRun(t, a, "ip", "route", "show", "proto", "95"); !strings.Contains(got, "10.213.0.64/26 via 198.18.0.2 dev eth0") {
		t.Fatalf("proto 95 routes:\n%s", got)
	}
	if res, err := Apply(ns, st); err != nil || !res.Empty() {
		t.Fatalf("second apply: %+v, %v", res, err)
	}
	for range 2 {
		if err := overlay.RemoveDirect(ns, "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	if got := kerneltest.NsRun(t, a, "ip", "route", "show", "proto", "95"); strings.TrimSpace(got) != "" {
		t.Errorf("direct routes left:\n%s", got)
	}
	if got := kerneltest.NsRun(t, a, "ip", "route", "show", "192.0.2.0/24"); !strings.Contains(got, "via 198.18.0.9") {
		t.Error("RemoveDirect deleted a route that is not ours")
	}
}
