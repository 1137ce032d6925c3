package vxlan

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/overlay"
)

// far is a peer across a router: 198.18.1.0/24 is not connected to self.
var far = Node{Name: "far", Underlay: ip("198.18.1.7"), VTEPMAC: VTEPMAC(ip("198.18.1.7")),
	Blocks: []netip.Prefix{pfx("10.213.2.0/26")}}

func directOpts(on bool) Options {
	return Options{MTU: 1450, Direct: overlay.Direct{UnderlayDevice: "eth0", DirectRouting: on,
		Connected: []netip.Prefix{pfx("198.18.0.1/24"), pfx("2001:db8::1/64")}}}
}

func TestDirectSameSubnetRoutedCrossSubnetEncapsulated(t *testing.T) {
	st, err := Desired(self, accepting(far, c, b), directOpts(true))
	if err != nil {
		t.Fatal(err)
	}
	src := ip("10.213.0.1")
	wantRoutes := []kernel.Route{
		{Dst: pfx("10.213.0.64/26"), Gw: ip("198.18.0.2"), Dev: "eth0", Src: src},
		{Dst: pfx("10.213.0.128/26"), Gw: ip("198.18.0.2"), Dev: "eth0", Src: src},
		{Dst: pfx("10.213.1.0/26"), Gw: ip("198.18.0.3"), Dev: "eth0", Src: src},
		{Dst: pfx("10.213.2.0/26"), Gw: ip("10.213.2.1"), Dev: "flatmesh.vx", OnLink: true, Src: src},
	}
	if got := st.Objects.Normalize().Routes; !reflect.DeepEqual(got, kernel.State{Routes: wantRoutes}.Normalize().Routes) {
		t.Errorf("routes:\n%v\nwant:\n%v", got, wantRoutes)
	}
	// Only the peer across the router has VXLAN entries.
	if len(st.Objects.FDB) != 1 || st.Objects.FDB[0].Dst != far.Underlay {
		t.Errorf("fdb %v, want one entry for %s", st.Objects.FDB, far.Underlay)
	}
	if len(st.Objects.Neighs) != 1 || st.Objects.Neighs[0].IP != ip("10.213.2.1") {
		t.Errorf("neighbours %v, want one for far's gateway", st.Objects.Neighs)
	}
	if !slices.Equal(st.Direct, []string{"b", "c"}) {
		t.Errorf("direct peers %v, want [b c]", st.Direct)
	}
	if sc := st.Scope(); !slices.Equal(sc.RouteLinks, []string{"flatmesh.vx", "eth0"}) {
		t.Errorf("route links %v", sc.RouteLinks)
	}
	if err := st.Scope().Check(st.Objects); err != nil {
		t.Errorf("desired state outside its own scope: %v", err)
	}
}

func TestDirectFlipWithdrawsAndRestores(t *testing.T) {
	on, err := Desired(self, accepting(b, far), directOpts(true))
	if err != nil {
		t.Fatal(err)
	}
	off, err := Desired(self, accepting(b, far), directOpts(false))
	if err != nil {
		t.Fatal(err)
	}
	if len(off.Direct) != 0 {
		t.Fatalf("direct peers with direct routing off: %v", off.Direct)
	}
	// Off: the same scope (eth0 routes are still ours), so the diff from
	// "on" deletes the direct routes and adds the VXLAN entries of b.
	if !reflect.DeepEqual(on.Scope(), off.Scope()) {
		t.Fatalf("scope changes with the setting: %+v vs %+v", on.Scope(), off.Scope())
	}
	// A route's identity is its destination: flipping replaces each route
	// in place (no moment without one), adds or deletes b's VXLAN entries.
	plan := kernel.Diff(off.Objects, on.Objects)
	if len(plan.Replace.Routes) != 2 || plan.Replace.Routes[0].Dev != "flatmesh.vx" || len(plan.Del.Routes) != 0 {
		t.Errorf("turning off: %s (replace %v), want b's two routes moved to flatmesh.vx", plan.String(), plan.Replace.Routes)
	}
	if len(plan.Add.FDB) != 1 || len(plan.Add.Neighs) != 2 {
		t.Errorf("turning off adds %s, want 1 fdb, 2 neighbours", plan.String())
	}
	back := kernel.Diff(on.Objects, off.Objects)
	if len(back.Del.FDB) != 1 || len(back.Del.Neighs) != 2 || len(back.Replace.Routes) != 2 || back.Replace.Routes[0].Dev != "eth0" {
		t.Errorf("turning on again: %s", back.String())
	}
	if p := kernel.Diff(on.Objects, on.Objects); !p.Empty() {
		t.Errorf("second pass plans %s", p.String())
	}
}

func TestDirectEdgeCases(t *testing.T) {
	// A peer whose address is the connected subnet's network address, a
	// peer of the other family and a peer clashing with a direct one's
	// underlay are not routed directly.
	netAddr := Node{Name: "n", Underlay: ip("198.18.0.0"), VTEPMAC: VTEPMAC(ip("198.18.0.0")),
		Blocks: []netip.Prefix{pfx("10.213.3.0/26")}}
	dup := Node{Name: "z", Underlay: ip("198.18.0.2"), VTEPMAC: VTEPMAC(ip("198.18.9.9")),
		Blocks: []netip.Prefix{pfx("10.213.4.0/26")}}
	st, err := Desired(self, accepting(netAddr, b, dup), directOpts(true))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Direct, []string{"b"}) {
		t.Errorf("direct %v, want [b]", st.Direct)
	}
	if !strings.Contains(strings.Join(st.Skipped, "\n"), "underlay 198.18.0.2 already used by b") {
		t.Errorf("skipped %v", st.Skipped)
	}
	// Mapped connected prefixes count as IPv4.
	o := directOpts(true)
	o.Connected = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom16(ip("198.18.0.1").As16()), 120)}
	if st, err := Desired(self, accepting(b), o); err != nil || !slices.Equal(st.Direct, []string{"b"}) {
		t.Errorf("mapped connected subnet: direct %v, err %v", st.Direct, err)
	}
	if _, err := Desired(self, []Node{b}, Options{MTU: 1450, Direct: overlay.Direct{DirectRouting: true}}); err == nil {
		t.Error("direct routing without an underlay device accepted")
	}
	if _, err := Desired(self, []Node{b}, Options{MTU: 1450, Direct: overlay.Direct{UnderlayDevice: "bad name"}}); err == nil {
		t.Error("bad underlay device name accepted")
	}
}

// accepting marks peers as accepting direct routing (the flag they gossip).
func accepting(peers ...Node) []Node {
	out := slices.Clone(peers)
	for i := range out {
		out[i].Direct = true
	}
	return out
}

// A peer on our subnet that does not accept direct routing (its agent runs
// without it, or is older) keeps the tunnel: it would drop what arrives on
// its NIC unencapsulated.
func TestDirectOnlyToPeersThatAcceptIt(t *testing.T) {
	st, err := Desired(self, []Node{b, c}, directOpts(true))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Direct) != 0 {
		t.Errorf("direct peers %v, want none", st.Direct)
	}
	for _, r := range st.Objects.Routes {
		if r.Dev == "eth0" {
			t.Errorf("route %v on the underlay to a peer that did not ask for it", r)
		}
	}
}
