package vxlan

import (
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func kmac(s string) kernel.MAC {
	m, err := kernel.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

var (
	self = Node{Name: "a", Underlay: ip("198.18.0.1"), Blocks: []netip.Prefix{pfx("10.213.0.0/26")}}
	b    = Node{Name: "b", Underlay: ip("198.18.0.2"), VTEPMAC: VTEPMAC(ip("198.18.0.2")),
		Blocks: []netip.Prefix{pfx("10.213.0.128/26"), pfx("10.213.0.64/26")}}
	c = Node{Name: "c", Underlay: ip("198.18.0.3"), VTEPMAC: VTEPMAC(ip("198.18.0.3")), Blocks: []netip.Prefix{pfx("10.213.1.0/26")}}
)

func TestDesiredTwoPeers(t *testing.T) {
	st, err := Desired(self, []Node{c, b}, Options{MTU: 1450})
	if err != nil {
		t.Fatal(err)
	}
	wantDev := kernel.VXLANSpec{Name: "flatmesh.vx", VNI: 4213, Port: 4789, Local: ip("198.18.0.1"), MTU: 1450, MAC: mac("0e:fd:c6:12:00:01")}
	if !reflect.DeepEqual(st.Device, wantDev) {
		t.Errorf("device %+v, want %+v", st.Device, wantDev)
	}
	if st.Bridge.Spec.Name != "flatmesh0" || st.Bridge.Spec.MTU != 1450 || st.Bridge.Spec.MAC.String() != "0e:fc:c6:12:00:01" {
		t.Errorf("bridge %+v", st.Bridge.Spec)
	}
	if st.TxChecksumOffload {
		t.Error("tx checksum offload on by default")
	}
	src := ip("10.213.0.1")
	want := kernel.State{
		Addrs: []kernel.Addr{{Dev: "flatmesh0", Prefix: pfx("10.213.0.1/26")}},
		Neighs: []kernel.Neigh{
			{Dev: "flatmesh.vx", IP: ip("10.213.0.65"), MAC: kmac("0e:fd:c6:12:00:02")},
			{Dev: "flatmesh.vx", IP: ip("10.213.0.129"), MAC: kmac("0e:fd:c6:12:00:02")},
			{Dev: "flatmesh.vx", IP: ip("10.213.1.1"), MAC: kmac("0e:fd:c6:12:00:03")},
		},
		FDB: []kernel.FDB{
			{Dev: "flatmesh.vx", MAC: kmac("0e:fd:c6:12:00:02"), Dst: ip("198.18.0.2")},
			{Dev: "flatmesh.vx", MAC: kmac("0e:fd:c6:12:00:03"), Dst: ip("198.18.0.3")},
		},
		Routes: []kernel.Route{
			{Dst: pfx("10.213.0.64/26"), Gw: ip("10.213.0.65"), Dev: "flatmesh.vx", Src: src, OnLink: true},
			{Dst: pfx("10.213.0.128/26"), Gw: ip("10.213.0.129"), Dev: "flatmesh.vx", Src: src, OnLink: true},
			{Dst: pfx("10.213.1.0/26"), Gw: ip("10.213.1.1"), Dev: "flatmesh.vx", Src: src, OnLink: true},
		},
	}
	if !reflect.DeepEqual(st.Objects, want) {
		t.Errorf("objects\n got %+v\nwant %+v", st.Objects, want)
	}
	if len(st.Skipped) != 0 {
		t.Errorf("skipped %v", st.Skipped)
	}
	if err := st.Objects.Validate(); err != nil {
		t.Errorf("invalid: %v", err)
	}
	if err := st.Scope().Check(st.Objects); err != nil {
		t.Errorf("out of scope: %v", err)
	}
	again, _ := Desired(self, []Node{b, c, self}, Options{MTU: 1450})
	if !reflect.DeepEqual(st, again) {
		t.Error("peer order or self in the peer list changed the result")
	}
}

func TestDesiredOptions(t *testing.T) {
	st, err := Desired(self, []Node{b}, Options{Device: "vx9", VNI: 9, Port: 8472, Bridge: "br9", MTU: 1400, UnderlayIndex: 3, TxChecksumOffload: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Device.Name != "vx9" || st.Device.VNI != 9 || st.Device.Port != 8472 || st.Device.ParentIndex != 3 || st.Bridge.Spec.Name != "br9" || !st.TxChecksumOffload {
		t.Fatalf("options not applied: %+v %+v", st.Device, st.Bridge.Spec)
	}
	for _, r := range st.Objects.Routes {
		if r.Dev != "vx9" {
			t.Fatalf("route on %s", r.Dev)
		}
	}
}

func TestDesiredSkips(t *testing.T) {
	peers := []Node{
		{Name: "empty", Underlay: ip("198.18.0.9"), VTEPMAC: VTEPMAC(ip("198.18.0.9"))},
		{Name: "nomac", Underlay: ip("198.18.0.10"), Blocks: []netip.Prefix{pfx("10.213.2.0/26")}},
		{Name: "mcast", Underlay: ip("198.18.0.11"), VTEPMAC: mac("01:00:5e:00:00:01"), Blocks: []netip.Prefix{pfx("10.213.3.0/26")}},
		{Name: "nounder", VTEPMAC: VTEPMAC(ip("198.18.0.12")), Blocks: []netip.Prefix{pfx("10.213.4.0/26")}},
		{Name: "v6", Underlay: ip("fd00::1"), VTEPMAC: VTEPMAC(ip("fd00::1")), Blocks: []netip.Prefix{pfx("10.213.5.0/26")}},
		{Name: "same-under", Underlay: ip("198.18.0.1"), VTEPMAC: VTEPMAC(ip("198.18.0.14")), Blocks: []netip.Prefix{pfx("10.213.6.0/26")}},
		{Name: "mine", Underlay: ip("198.18.0.15"), VTEPMAC: VTEPMAC(ip("198.18.0.15")), Blocks: []netip.Prefix{pfx("10.213.0.0/24")}},
		b,
		{Name: "bb-dup", Underlay: ip("198.18.0.16"), VTEPMAC: VTEPMAC(ip("198.18.0.16")), Blocks: []netip.Prefix{pfx("10.213.0.64/26"), pfx("10.213.7.0/26")}},
		{Name: "bc-mac", Underlay: ip("198.18.0.17"), VTEPMAC: b.VTEPMAC, Blocks: []netip.Prefix{pfx("10.213.8.0/26")}},
		{Name: "tiny", Underlay: ip("198.18.0.18"), VTEPMAC: VTEPMAC(ip("198.18.0.18")), Blocks: []netip.Prefix{pfx("10.213.9.0/31")}},
	}
	st, err := Desired(self, peers, Options{MTU: 1450})
	if err != nil {
		t.Fatal(err)
	}
	skipped := strings.Join(st.Skipped, "\n")
	for _, w := range []string{
		"peer nomac: no vtep mac",
		"peer mcast: vtep mac 01:00:5e:00:00:01 is not a unicast",
		"peer nounder: no usable underlay address",
		"peer v6: underlay fd00::1 is of another family",
		"peer same-under: underlay 198.18.0.1 already used by a",
		"peer mine: block 10.213.0.0/24 overlaps 10.213.0.0/26 (our own block)",
		"peer bb-dup: block 10.213.0.64/26 overlaps 10.213.0.64/26 (peer b)",
		"peer bc-mac: vtep mac 0e:fd:c6:12:00:02 already used by b",
		"peer tiny: block 10.213.9.0/31 is too small",
	} {
		if !strings.Contains(skipped, w) {
			t.Errorf("skipped lacks %q:\n%s", w, skipped)
		}
	}
	if strings.Contains(skipped, "empty") {
		t.Errorf("a peer without blocks is not worth a log line:\n%s", skipped)
	}
	// b's two blocks plus bb-dup's non-overlapping block.
	var dsts []string
	for _, r := range st.Objects.Routes {
		dsts = append(dsts, r.Dst.String())
	}
	if got := strings.Join(dsts, " "); got != "10.213.0.64/26 10.213.0.128/26 10.213.7.0/26" {
		t.Errorf("routes to %s", got)
	}
	if len(st.Objects.FDB) != 2 || len(st.Objects.Neighs) != 3 {
		t.Errorf("fdb %v neighs %v", st.Objects.FDB, st.Objects.Neighs)
	}
	if err := st.Objects.Validate(); err != nil {
		t.Errorf("invalid: %v", err)
	}
}

func TestDesiredSelfWithoutBlocks(t *testing.T) {
	st, err := Desired(Node{Name: "a", Underlay: ip("198.18.0.1")}, []Node{b}, Options{MTU: 1450})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Objects.Addrs) != 0 || len(st.Objects.Routes) != 2 || st.Objects.Routes[0].Src.IsValid() {
		t.Fatalf("objects %+v", st.Objects)
	}
}

func TestDesiredErrors(t *testing.T) {
	cases := []struct {
		self Node
		opts Options
		msg  string
	}{
		{Node{Name: "a"}, Options{MTU: 1450}, "no underlay address"},
		{self, Options{}, "mtu not set"},
		{self, Options{MTU: 1450, VNI: 1 << 25}, "vni"},
		{Node{Name: "a", Underlay: ip("198.18.0.1"), VTEPMAC: mac("00:11:22:33:44:55:66:77")}, Options{MTU: 1450}, "6-byte"},
		{Node{Name: "a", Underlay: ip("198.18.0.1"), Blocks: []netip.Prefix{pfx("10.0.0.0/24"), pfx("10.0.0.0/26")}}, Options{MTU: 1450}, "overlap"},
	}
	for _, c := range cases {
		if _, err := Desired(c.self, nil, c.opts); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v %+v: error %v, want %q", c.self, c.opts, err, c.msg)
		}
	}
}

func TestPeerGoneWithdrawsItsEntries(t *testing.T) {
	both, _ := Desired(self, []Node{b, c}, Options{MTU: 1450})
	onlyB, _ := Desired(self, []Node{b}, Options{MTU: 1450})
	p := kernel.Diff(onlyB.Objects, both.Objects)
	if p.Add.Len()+p.Replace.Len() != 0 {
		t.Fatalf("removing a peer added something: %s", p)
	}
	if len(p.Del.Routes) != 1 || len(p.Del.Neighs) != 1 || len(p.Del.FDB) != 1 || p.Del.Routes[0].Dst != pfx("10.213.1.0/26") {
		t.Fatalf("withdraw plan %+v", p.Del)
	}
	if p := kernel.Diff(both.Objects, both.Objects); !p.Empty() {
		t.Fatalf("same state twice: %s", p)
	}
}
