package firewall

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func guardOptions(masq bool, members ...string) Options {
	o := Options{Bridge: "flatmesh0", Overlay: "flatmesh.vxlan", ClusterCIDRs: pfx("10.213.0.0/16"),
		Masquerade: masq, TunnelPorts: []uint16{4789}, TunnelLocal: netip.MustParseAddr("10.99.0.1"),
		OnlyWhenNeeded: true}
	for _, m := range members {
		o.Members = append(o.Members, netip.MustParseAddr(m))
	}
	return o
}

// applyAgentOrder runs EnsureAll's sequence on s, checking after every
// step that one of the two guards keeps strangers off the tunnel port.
func applyAgentOrder(t *testing.T, o Options, s saved) saved {
	t.Helper()
	ensure, notrack := Rules(o).IPv4, NoTrackRules(o, 4789).IPv4
	steps := [][]Chain{ensure, notrack, ensure}
	if o.Masquerade {
		steps = [][]Chain{notrack, ensure, notrack, ensure}
	}
	for i, want := range steps {
		text := planNeeded(want, s, true)
		if text == "" {
			continue
		}
		var err error
		if s, err = simulate(s, text); err != nil {
			t.Fatalf("step %d:\n%s\n%v", i, text, err)
		}
		if !rawGuardInPlace(s, guardRules(o, IPv4, o.TunnelPorts)) && !inputGuardInPlace(s) {
			t.Fatalf("after step %d no guard on the tunnel port:\n%s", i, text)
		}
	}
	for _, want := range [][]Chain{ensure, notrack} {
		if p := problemsNeeded(IPv4, want, s, true); len(p) != 0 {
			t.Fatalf("not converged: %q", p)
		}
	}
	return s
}

func TestGuardRules(t *testing.T) {
	o := guardOptions(true, "10.99.0.3", "10.99.0.2", "fd00::2")
	want := []string{
		"-d 10.99.0.1/32 -p udp -m udp --dport 4789 -j CT --notrack",
		"-p udp -m udp --dport 4789 -m set --match-set flatmesh-members src -j RETURN",
		"-p udp -m udp --dport 4789 -m addrtype --dst-type LOCAL -j DROP",
	}
	if got := guardRules(o, IPv4, o.TunnelPorts); !slices.Equal(got, want) {
		t.Fatalf("guard %q", got)
	}
	// The members are the set's contents, not rules: the chain is the
	// same for any membership, so a member change writes no rule.
	if got := guardRules(guardOptions(true), IPv4, o.TunnelPorts); !slices.Equal(got, want) {
		t.Fatalf("guard without members %q", got)
	}
	pre := NoTrackRules(o, 4789).IPv4[0]
	if !slices.Equal(pre.Rules[:3], want) || pre.Rules[3] != "-s 10.213.0.0/16 -d 10.213.0.0/16 -j CT --notrack" {
		t.Errorf("prerouting %q", pre.Rules)
	}
	if pre.When != ConntrackOrGuard || !slices.Equal(pre.Guard, want) {
		t.Errorf("prerouting chain %+v", pre)
	}
	// Without this host's address: any local destination (route lookup).
	o.TunnelLocal = netip.Addr{}
	if got := guardRules(o, IPv4, o.TunnelPorts); got[0] != "-p udp -m udp --dport 4789 -m addrtype --dst-type LOCAL -j CT --notrack" {
		t.Errorf("guard without local address %q", got)
	}
	// A port not in TunnelPorts is only untracked, never guarded.
	if got := NoTrackRules(o, 8472).IPv4[0]; got.When != ConntrackInUse || strings.Contains(strings.Join(got.Rules, "\n"), "DROP") {
		t.Errorf("unguarded port %+v", got)
	}
}

// With masquerade (a nat table: conntrack in use) the raw chain guards the
// port and filter INPUT's chain goes; a new member is let in, a departed
// one dropped, with a guard in place after every step.
func TestGuardMovesToRaw(t *testing.T) {
	s := applyAgentOrder(t, guardOptions(true, "10.99.0.2"), saved{})
	if s.table("filter").has(InputChain) {
		t.Fatalf("FLATMESH-INPUT kept beside the raw guard: %+v", s.table("filter"))
	}
	if !rawGuardInPlace(s, guardRules(guardOptions(true, "10.99.0.2"), IPv4, []uint16{4789})) {
		t.Fatal("no raw guard")
	}
	// Members come and go in the set (memberset_linux.go): the tables
	// need no write for it.
	for _, members := range [][]string{{"10.99.0.2", "10.99.0.3"}, {"10.99.0.3"}} {
		o := guardOptions(true, members...)
		for _, want := range [][]Chain{NoTrackRules(o, 4789).IPv4, Rules(o).IPv4} {
			if text := planNeeded(want, s, true); text != "" {
				t.Fatalf("members %v: the tables change:\n%s", members, text)
			}
		}
	}
	if s.table("filter").has(InputChain) {
		t.Fatal("FLATMESH-INPUT back")
	}
}

// Without any conntrack user the raw chain would only cost: filter INPUT
// guards the port, and turning masquerade off later moves the guard back
// without a step where neither holds.
func TestGuardStaysInFilterWithoutConntrack(t *testing.T) {
	s := applyAgentOrder(t, guardOptions(false, "10.99.0.2"), saved{})
	if !inputGuardInPlace(s) || s.table("raw").has(NoTrackChain) {
		t.Fatalf("want FLATMESH-INPUT only: filter %+v raw %+v", s.table("filter"), s.table("raw"))
	}
	s = applyAgentOrder(t, guardOptions(true, "10.99.0.2"), s)
	if s.table("filter").has(InputChain) || !s.table("raw").has(NoTrackChain) {
		t.Fatal("masquerade on: want the raw guard only")
	}
	// Masquerade off again, the nat table left empty by another program
	// would still count; drop it as a host without NAT would have none.
	text := planRemove(allChains(), s)
	if s2, err := simulate(s, text); err != nil {
		t.Fatal(err)
	} else {
		delete(s2.tables, "nat")
		s2 = applyAgentOrder(t, guardOptions(false, "10.99.0.2"), s2)
		if !rawGuardInPlace(s2, guardRules(guardOptions(false, "10.99.0.2"), IPv4, []uint16{4789})) && !inputGuardInPlace(s2) {
			t.Fatal("no guard")
		}
	}
}

func TestMemberAddrsAndSetDiff(t *testing.T) {
	members := []netip.Addr{netip.MustParseAddr("10.99.0.3"), netip.MustParseAddr("::ffff:10.99.0.2"),
		netip.MustParseAddr("fd00::2"), netip.MustParseAddr("10.99.0.3"), {}}
	v4 := memberAddrs(members, IPv4)
	if want := []netip.Addr{netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.3")}; !slices.Equal(v4, want) {
		t.Fatalf("IPv4 members %v", v4)
	}
	if v6 := memberAddrs(members, IPv6); len(v6) != 1 || v6[0] != netip.MustParseAddr("fd00::2") {
		t.Fatalf("IPv6 members %v", v6)
	}
	have := []netip.Addr{netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.3")}
	add, del := setDiff(v4, have)
	if len(add) != 1 || add[0] != netip.MustParseAddr("10.99.0.2") || len(del) != 1 || del[0] != netip.MustParseAddr("10.99.0.1") {
		t.Fatalf("add %v del %v", add, del)
	}
	if add, del := setDiff(v4, v4); add != nil || del != nil {
		t.Fatalf("equal sets: add %v del %v", add, del)
	}
}
