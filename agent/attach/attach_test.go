package attach

import (
	"net/netip"
	"strings"
	"testing"
)

func TestHostIfNameAndAlias(t *testing.T) {
	n := HostIfName("abc123", "eth0")
	if len(n) != 12 || !strings.HasPrefix(n, "fm") || n != HostIfName("abc123", "eth0") {
		t.Fatalf("name %q not deterministic or wrong shape", n)
	}
	if n == HostIfName("abc123", "eth1") || n == HostIfName("abc1230", "eth0") {
		t.Fatal("different identities share a host name")
	}
	id, ifn, ok := ParseAlias(Alias("ns:with:colons", "eth0"))
	if !ok || id != "ns:with:colons" || ifn != "eth0" {
		t.Fatalf("parse: %q %q %t", id, ifn, ok)
	}
	for _, bad := range []string{"", "flatmesh:", "flatmesh:x", "flatmesh:x:", "other:x:eth0", "flatmesh::eth0"} {
		if _, _, ok := ParseAlias(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestSpecNormalize(t *testing.T) {
	good := Spec{Netns: "x", ContainerID: "c1", Bridge: "flatmesh0", Address: netip.MustParsePrefix("10.213.0.5/26"),
		Gateway: netip.MustParseAddr("10.213.0.1")}
	s, err := good.normalize()
	if err != nil || s.IfName != "eth0" {
		t.Fatalf("good spec: %+v %v", s, err)
	}
	mod := func(f func(*Spec)) Spec { s := good; f(&s); return s }
	cases := []struct {
		s   Spec
		msg string
	}{
		{mod(func(s *Spec) { s.IfName = "averyveryverylongname" }), "is 21 bytes long; Linux allows at most 15"},
		{mod(func(s *Spec) { s.IfName = "eth 0" }), "contains ' '"},
		{mod(func(s *Spec) { s.ContainerID = "" }), "container id is empty"},
		{mod(func(s *Spec) { s.ContainerID = strings.Repeat("a", 201) }), "at most 200"},
		{mod(func(s *Spec) { s.Netns = "" }), "no network namespace"},
		{mod(func(s *Spec) { s.Bridge = "" }), "no bridge"},
		{mod(func(s *Spec) { s.Address = netip.Prefix{} }), "no valid container address"},
		{mod(func(s *Spec) { s.Address = netip.MustParsePrefix("10.213.0.0/26") }), "network address"},
		{mod(func(s *Spec) { s.Address = netip.MustParsePrefix("10.213.0.63/26") }), "broadcast address"},
		{mod(func(s *Spec) { s.Address = netip.MustParsePrefix("224.0.0.1/4") }), "cannot be a container address"},
		{mod(func(s *Spec) { s.Gateway = netip.MustParseAddr("fd00::1") }), "different families"},
		{mod(func(s *Spec) { s.Gateway = netip.MustParseAddr("10.213.0.5") }), "own address"},
		{mod(func(s *Spec) { s.MTU = 20 }), "mtu 20 out of range"},
		{mod(func(s *Spec) {
			s.Address, s.Gateway, s.GratuitousARP = netip.MustParsePrefix("fd00::5/64"), netip.Addr{}, true
		}), "gratuitous arp needs an IPv4"},
	}
	for _, c := range cases {
		if _, err := c.s.normalize(); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: error %v, want %q", c.s, err, c.msg)
		}
	}
	if _, err := mod(func(s *Spec) { s.Address = netip.MustParsePrefix("10.0.0.0/31") }).normalize(); err != nil {
		t.Errorf("/31 address refused: %v", err)
	}
}
