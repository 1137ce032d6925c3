package wireguard

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/overlay"
)

// TestDirectSameSubnetPlainCrossSubnetEncrypted: with direct routing, a
// same-subnet peer that gossips the flag gets plain routes via its
// underlay address and no WireGuard peer entry; a same-subnet peer without
// the flag and a peer across a router keep the tunnel; turning it off puts
// every peer back in the tunnel and withdraws the direct routes (the
// underlay link stays in scope).
func TestDirectSameSubnetPlainCrossSubnetEncrypted(t *testing.T) {
	priv := key(t)
	self := Node{Name: "a", Underlay: ip("198.18.0.1"), Blocks: []netip.Prefix{pfx("10.213.0.0/26")}}
	near := Node{Name: "b", Underlay: ip("198.18.0.2"), Port: 51820, PublicKey: key(t).PublicKey(), Direct: true,
		Blocks: []netip.Prefix{pfx("10.213.0.64/26")}}
	noFlag := Node{Name: "c", Underlay: ip("198.18.0.3"), Port: 51820, PublicKey: key(t).PublicKey(),
		Blocks: []netip.Prefix{pfx("10.213.0.128/26")}}
	far := Node{Name: "d", Underlay: ip("198.18.1.4"), Port: 51820, PublicKey: key(t).PublicKey(), Direct: true,
		Blocks: []netip.Prefix{pfx("10.213.0.192/26")}}
	opts := Options{MTU: 1440, PrivateKey: priv, Direct: overlay.Direct{UnderlayDevice: "eth0", DirectRouting: true,
		Connected: []netip.Prefix{pfx("198.18.0.1/24")}}}
	st, err := Desired(self, []Node{far, noFlag, near}, opts)
	if err != nil {
		t.Fatal(err)
	}
	src := ip("10.213.0.1")
	want := []kernel.Route{
		{Dst: pfx("10.213.0.64/26"), Gw: ip("198.18.0.2"), Dev: "eth0", Src: src},
		{Dst: pfx("10.213.0.128/26"), Dev: "flatmesh.wg", Src: src},
		{Dst: pfx("10.213.0.192/26"), Dev: "flatmesh.wg", Src: src},
	}
	if got := st.Objects.Normalize().Routes; !reflect.DeepEqual(got, kernel.State{Routes: want}.Normalize().Routes) {
		t.Errorf("routes:\n%v\nwant:\n%v", got, want)
	}
	var names []string
	for _, p := range st.Device.Peers {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"c", "d"}) || !slices.Equal(st.Direct, []string{"b"}) {
		t.Errorf("wireguard peers %v, direct %v; want [c d] and [b]", names, st.Direct)
	}
	if sc := st.Scope(); !slices.Equal(sc.RouteLinks, []string{"flatmesh.wg", "eth0"}) {
		t.Errorf("route links %v", sc.RouteLinks)
	} else if err := sc.Check(st.Objects); err != nil {
		t.Errorf("desired state outside its own scope: %v", err)
	}

	opts.DirectRouting = false
	off, err := Desired(self, []Node{far, noFlag, near}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(off.Direct) != 0 || len(off.Device.Peers) != 3 {
		t.Errorf("off: direct %v, %d wireguard peers; want none and 3", off.Direct, len(off.Device.Peers))
	}
	for _, r := range off.Objects.Routes {
		if r.Dev != "flatmesh.wg" {
			t.Errorf("off: route %v outside the tunnel", r)
		}
	}
	if sc := off.Scope(); !slices.Contains(sc.RouteLinks, "eth0") {
		t.Errorf("off: the underlay link left the scope (%v): its direct routes would stay", sc.RouteLinks)
	}
}
