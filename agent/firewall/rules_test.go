package firewall

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

const (
	fwdJump = `-j FLATMESH-FORWARD`
	natJump = `-j FLATMESH-POSTROUTING`
)

func TestRulesVXLAN(t *testing.T) {
	o := Options{
		Bridge: "flatmesh0", Overlay: "flatmesh.vx",
		ClusterCIDRs: pfx("10.213.0.0/16"),
		NoNAT:        pfx("192.168.56.12/32", "192.168.56.11/32", "10.213.7.0/24"),
		Masquerade:   true,
	}
	rs := Rules(o)
	if rs.IPv6 != nil {
		t.Fatalf("IPv6 chains without Options.IPv6: %+v", rs.IPv6)
	}
	want := []Chain{
		{Table: "filter", Name: ForwardChain, Hook: "FORWARD", Jump: fwdJump, Rules: []string{
			// The common flows first, each a subset of an accept below
			// with our own device as output (forward_fast.go).
			"-s 10.213.0.0/16 -i flatmesh0 -o flatmesh.vx -j ACCEPT",
			"-s 10.213.0.0/16 -d 10.213.0.0/16 -i flatmesh.vx -o flatmesh0 -j ACCEPT",
			// Docker's bridges stay Docker's to police.
			"-o docker0 -j RETURN",
			"-o br-+ -j RETURN",
			"-s 10.213.0.0/16 -i flatmesh0 -j ACCEPT",
			"-d 10.213.0.0/16 -o flatmesh0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
			// From the overlay: cluster and member sources only.
			"-s 10.213.0.0/16 -d 10.213.0.0/16 -i flatmesh.vx -j ACCEPT",
			"-s 192.168.56.11/32 -d 10.213.0.0/16 -i flatmesh.vx -j ACCEPT",
			"-s 192.168.56.12/32 -d 10.213.0.0/16 -i flatmesh.vx -j ACCEPT",
		}},
		{Table: "nat", Name: PostroutingChain, Hook: "POSTROUTING", Jump: natJump, Rules: []string{
			// 10.213.7.0/24 is inside the cluster CIDR: no rule of its own.
			"-s 10.213.0.0/16 -d 10.213.0.0/16 -j ACCEPT",
			"-s 10.213.0.0/16 -d 192.168.56.11/32 -j ACCEPT",
			"-s 10.213.0.0/16 -d 192.168.56.12/32 -j ACCEPT",
			"-s 10.213.0.0/16 ! -o flatmesh0 -j MASQUERADE",
		}},
	}
	if !chainsEqual(rs.IPv4, want) {
		t.Fatalf("Rules:\n got %+v\nwant %+v", rs.IPv4, want)
	}
}

func TestRulesVariants(t *testing.T) {
	cases := []struct {
		name   string
		o      Options
		fwd    []string
		nat    []string
		v6fwd  []string
		v6nat  []string
		wantV6 bool
	}{{
		name: "flat mode: bridged frames of cluster addresses only",
		o:    Options{Bridge: "br0", Flat: true, ClusterCIDRs: pfx("192.168.1.64/26"), NoNAT: pfx("192.168.1.0/24")},
		fwd: []string{"-s 192.168.1.64/26 -i br0 -o br0 -m physdev --physdev-is-bridged -j ACCEPT",
			"-d 192.168.1.64/26 -i br0 -o br0 -m physdev --physdev-is-bridged -j ACCEPT"},
		nat: []string{"-s 192.168.1.64/26 -d 192.168.1.0/24 -j ACCEPT"},
	}, {
		name: "no bridge: masquerade on any device",
		o:    Options{Overlay: "wg0", ClusterCIDRs: pfx("10.1.2.3/16"), Masquerade: true},
		fwd:  withDockerReturns("-s 10.1.0.0/16 -d 10.1.0.0/16 -i wg0 -j ACCEPT"),
		nat:  []string{"-s 10.1.0.0/16 -d 10.1.0.0/16 -j ACCEPT", "-s 10.1.0.0/16 -j MASQUERADE"},
	}, {
		name: "no cluster address: nothing accepted",
		o:    Options{Bridge: "x", Overlay: "y"},
		fwd:  nil,
	}, {
		name: "IPv6 prefixes ignored without IPv6",
		o:    Options{Bridge: "b", ClusterCIDRs: pfx("fd00::/64", "10.0.0.0/8"), NoNAT: pfx("fd01::1/128"), Masquerade: true},
		fwd:  withDockerReturns("-s 10.0.0.0/8 -i b -j ACCEPT", "-d 10.0.0.0/8 -o b -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
		nat:  []string{"-s 10.0.0.0/8 -d 10.0.0.0/8 -j ACCEPT", "-s 10.0.0.0/8 ! -o b -j MASQUERADE"},
	}, {
		name: "IPv6 chains hold only IPv6 prefixes",
		o: Options{Bridge: "b", ClusterCIDRs: pfx("fd00::/64", "10.0.0.0/8"), NoNAT: pfx("fd01::1/128"),
			Masquerade: true, IPv6: true},
		fwd:    withDockerReturns("-s 10.0.0.0/8 -i b -j ACCEPT", "-d 10.0.0.0/8 -o b -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
		nat:    []string{"-s 10.0.0.0/8 -d 10.0.0.0/8 -j ACCEPT", "-s 10.0.0.0/8 ! -o b -j MASQUERADE"},
		wantV6: true,
		v6fwd:  withDockerReturns("-s fd00::/64 -i b -j ACCEPT", "-d fd00::/64 -o b -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
		v6nat: []string{"-s fd00::/64 -d fd00::/64 -j ACCEPT", "-s fd00::/64 -d fd01::1/128 -j ACCEPT",
			"-s fd00::/64 ! -o b -j MASQUERADE"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := Rules(c.o)
			checkChains(t, "IPv4", rs.IPv4, c.fwd, c.nat)
			if !c.wantV6 {
				if rs.IPv6 != nil {
					t.Fatalf("unexpected IPv6 chains %+v", rs.IPv6)
				}
				return
			}
			checkChains(t, "IPv6", rs.IPv6, c.v6fwd, c.v6nat)
		})
	}
}

func checkChains(t *testing.T, fam string, got []Chain, fwd, nat []string) {
	t.Helper()
	if len(got) < 2 || got[0].Name != ForwardChain || got[1].Name != PostroutingChain {
		t.Fatalf("%s chains: %+v", fam, got)
	}
	if !slices.Equal(got[0].Rules, fwd) {
		t.Errorf("%s forward rules:\n got %q\nwant %q", fam, got[0].Rules, fwd)
	}
	if !slices.Equal(got[1].Rules, nat) {
		t.Errorf("%s nat rules:\n got %q\nwant %q", fam, got[1].Rules, nat)
	}
}

func chainsEqual(a, b []Chain) bool {
	return slices.EqualFunc(a, b, func(x, y Chain) bool {
		return x.Table == y.Table && x.Name == y.Name && x.Hook == y.Hook && x.Jump == y.Jump &&
			slices.Equal(x.Rules, y.Rules)
	})
}

func TestNormalizeOrderIndependent(t *testing.T) {
	a := normalize(pfx("10.0.0.5/32", "192.168.0.0/16", "10.0.0.0/8", "192.168.3.1/24", "fd00::/8"), IPv4)
	b := normalize(pfx("192.168.3.0/24", "10.0.0.0/8", "192.168.0.0/16", "10.0.0.5/32"), IPv4)
	want := pfx("10.0.0.0/8", "192.168.0.0/16")
	if !slices.Equal(a, want) || !slices.Equal(b, want) {
		t.Fatalf("normalize: %v and %v, want %v", a, b, want)
	}
	if got := normalize(pfx("fd00:1::/64", "10.0.0.0/8", "fd00::/16"), IPv6); !slices.Equal(got, pfx("fd00::/16")) {
		t.Fatalf("normalize IPv6: %v", got)
	}
	if got := normalize(nil, IPv4); got != nil {
		t.Fatalf("normalize(nil) = %v", got)
	}
}

func TestValidate(t *testing.T) {
	ok := Options{Bridge: "flatmesh0", Overlay: "flatmesh.vx", ClusterCIDRs: pfx("10.213.0.0/16"), NoNAT: pfx("fd00::1/128")}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	bad := []struct {
		o    Options
		want string
	}{
		{Options{Bridge: "a-very-long-bridge-name"}, "bridge"},
		{Options{Overlay: "wg+"}, "iptables treats specially"},
		{Options{Bridge: `b"r`}, "iptables treats specially"},
		{Options{ClusterCIDRs: []netip.Prefix{{}}}, "invalid prefix"},
		{Options{NoNAT: pfx("::ffff:10.0.0.1/128")}, "IPv4-mapped"},
	}
	for _, b := range bad {
		err := b.o.Validate()
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("Validate(%+v) = %v, want error containing %q", b.o, err, b.want)
		}
	}
}

func TestTextFromScratch(t *testing.T) {
	rs := Rules(Options{Bridge: "br0", ClusterCIDRs: pfx("10.9.0.0/16"), Masquerade: true})
	want := `*filter
:FLATMESH-FORWARD - [0:0]
-A FLATMESH-FORWARD -o docker0 -j RETURN
-A FLATMESH-FORWARD -o br-+ -j RETURN
-A FLATMESH-FORWARD -s 10.9.0.0/16 -i br0 -j ACCEPT
-A FLATMESH-FORWARD -d 10.9.0.0/16 -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-I FORWARD 1 ` + fwdJump + `
COMMIT
*nat
:FLATMESH-POSTROUTING - [0:0]
-A FLATMESH-POSTROUTING -s 10.9.0.0/16 -d 10.9.0.0/16 -j ACCEPT
-A FLATMESH-POSTROUTING -s 10.9.0.0/16 ! -o br0 -j MASQUERADE
-I POSTROUTING 1 ` + natJump + `
COMMIT
`
	if got := rs.Text(IPv4); got != want {
		t.Fatalf("Text(IPv4):\n%s\nwant:\n%s", got, want)
	}
	if got := rs.Text(IPv6); got != "" {
		t.Fatalf("Text(IPv6) without IPv6 = %q", got)
	}
	if IPv4.String() != "iptables" || IPv6.String() != "ip6tables" {
		t.Fatalf("family names %s %s", IPv4, IPv6)
	}
}

func TestRulesTunnelPortsFromMembersOnly(t *testing.T) {
	o := Options{Bridge: "flatmesh0", Overlay: "flatmesh.vx", ClusterCIDRs: pfx("10.213.0.0/16"),
		TunnelPorts: []uint16{51820, 4789, 4789},
		Members:     []netip.Addr{netip.MustParseAddr("192.168.56.12"), netip.MustParseAddr("::ffff:192.168.56.11"), netip.MustParseAddr("fd00::1")}}
	rs := Rules(o)
	if len(rs.IPv4) != 3 || rs.IPv4[2].Name != InputChain || rs.IPv4[2].Hook != "INPUT" {
		t.Fatalf("chains: %+v", rs.IPv4)
	}
	want := []string{
		"-p udp -m udp --dport 4789 -m set --match-set flatmesh-members src -j ACCEPT",
		"-p udp -m udp --dport 4789 -j DROP",
		"-p udp -m udp --dport 51820 -m set --match-set flatmesh-members src -j ACCEPT",
		"-p udp -m udp --dport 51820 -j DROP",
	}
	if !slices.Equal(rs.IPv4[2].Rules, want) {
		t.Fatalf("input rules:\n got %q\nwant %q", rs.IPv4[2].Rules, want)
	}
	// The members are the set's contents: no member yet (an empty set:
	// the ports are closed to everyone) gives the same rules.
	o.Members = nil
	if r := Rules(o).IPv4[2].Rules; !slices.Equal(r, want) {
		t.Fatalf("no members: %q", r)
	}
	o.IPv6 = true
	if r := Rules(o).IPv6[2].Rules; r[0] != "-p udp -m udp --dport 4789 -m set --match-set flatmesh-members6 src -j ACCEPT" {
		t.Fatalf("IPv6 input rules name the IPv6 set: %q", r)
	}
	// No tunnel port: no input chain.
	if n := len(Rules(Options{Bridge: "b"}).IPv4); n != 2 {
		t.Fatalf("%d chains without tunnel ports", n)
	}
}

// withDockerReturns is an overlay forward chain: Docker's bridges handed back
// to FORWARD first, then rules.
func withDockerReturns(rules ...string) []string {
	return append([]string{"-o docker0 -j RETURN", "-o br-+ -j RETURN"}, rules...)
}

func TestRulesDockerNamedBridgeIsNotReturned(t *testing.T) {
	got := Rules(Options{Bridge: "br-lan", ClusterCIDRs: pfx("10.0.0.0/8")}).IPv4[0].Rules
	want := []string{"-o docker0 -j RETURN", "-s 10.0.0.0/8 -i br-lan -j ACCEPT", "-d 10.0.0.0/8 -o br-lan -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"}
	if !slices.Equal(got, want) {
		t.Errorf("rules %q, want %q", got, want)
	}
}

func TestRulesDirectRoutingAcceptsClusterTrafficFromTheUnderlay(t *testing.T) {
	got := Rules(Options{Bridge: "flatmesh0", Overlay: "flatmesh.vx", Direct: "eth0", ClusterCIDRs: pfx("10.213.0.0/16")}).IPv4[0].Rules
	want := "-s 10.213.0.0/16 -d 10.213.0.0/16 -i eth0 -o flatmesh0 -j ACCEPT"
	if !slices.Contains(got, want) {
		t.Errorf("rules %q lack %q", got, want)
	}
	for _, r := range Rules(Options{Bridge: "flatmesh0", Overlay: "flatmesh.vx", ClusterCIDRs: pfx("10.213.0.0/16")}).IPv4[0].Rules {
		if strings.Contains(r, "-i eth0") {
			t.Errorf("without direct routing the underlay is accepted: %q", r)
		}
	}
}

// Members are exempt from NAT and accepted from the overlay through the
// member set (no rule per member); NoNAT keeps its own rules.
func TestMembersExemptThroughTheSet(t *testing.T) {
	o := Options{Bridge: "flatmesh0", Overlay: "flatmesh.vx", ClusterCIDRs: pfx("10.213.0.0/16"), Masquerade: true,
		TunnelPorts: []uint16{4789}, Members: []netip.Addr{netip.MustParseAddr("192.168.56.12")}}
	rs := Rules(o)
	nat, fwd := rs.IPv4[1].Rules, rs.IPv4[0].Rules
	if !slices.Contains(nat, "-s 10.213.0.0/16 -m set --match-set flatmesh-members dst -j ACCEPT") ||
		slices.ContainsFunc(nat, func(r string) bool { return strings.Contains(r, "192.168.56.12") }) {
		t.Fatalf("nat rules %q", nat)
	}
	i := slices.Index(nat, "-s 10.213.0.0/16 -m set --match-set flatmesh-members dst -j ACCEPT")
	if j := slices.IndexFunc(nat, func(r string) bool { return strings.Contains(r, "MASQUERADE") }); j < i {
		t.Fatalf("the members' exemption must come before MASQUERADE: %q", nat)
	}
	if !slices.Contains(fwd, "-d 10.213.0.0/16 -i flatmesh.vx -m set --match-set flatmesh-members src -j ACCEPT") {
		t.Fatalf("forward rules %q", fwd)
	}
	// The rules do not change with the members.
	o2 := o
	o2.Members = append(o2.Members, netip.MustParseAddr("192.168.56.13"))
	if !slices.Equal(Rules(o2).IPv4[0].Rules, fwd) || !slices.Equal(Rules(o2).IPv4[1].Rules, nat) {
		t.Fatal("a member change changed the rules")
	}
	// Without a tunnel port there is no set: no rule names it.
	o.TunnelPorts = nil
	for _, c := range Rules(o).IPv4 {
		if slices.ContainsFunc(c.Rules, func(r string) bool { return strings.Contains(r, "--match-set") }) {
			t.Fatalf("chain %s names the set without tunnel ports: %q", c.Name, c.Rules)
		}
	}
}
