package firewall

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestNoTrackRules(t *testing.T) {
	o := Options{ClusterCIDRs: pfx("10.213.0.0/16", "10.213.4.0/24", "fd00:213::/48"), IPv6: true,
		NoNAT: pfx("192.168.56.11/32"), Bridge: "flatmesh0"}
	rs := NoTrackRules(o, 0)
	want4 := []string{"-s 10.213.0.0/16 -d 10.213.0.0/16 -j CT --notrack"} // the /24 is covered
	if len(rs.IPv4) != 2 {
		t.Fatalf("chains %+v", rs.IPv4)
	}
	for i, hook := range []string{"PREROUTING", "OUTPUT"} {
		c := rs.IPv4[i]
		if c.Table != "raw" || c.Hook != hook || !slices.Equal(c.Rules, want4) {
			t.Errorf("chain %d: %+v", i, c)
		}
		if c.Jump != "-j "+c.Name {
			t.Errorf("jump %q", c.Jump)
		}
	}
	if rs.IPv4[0].Name == rs.IPv4[1].Name {
		t.Error("one chain for both hooks: a refill of one would be planned twice")
	}
	// Underlay (NoNAT) addresses stay tracked: container traffic to hosts
	// may be masqueraded or checked by stateful rules.
	if got := rs.IPv6[0].Rules; !slices.Equal(got, []string{"-s fd00:213::/48 -d fd00:213::/48 -j CT --notrack"}) {
		t.Errorf("ipv6 rules %q", got)
	}
	if rs := NoTrackRules(Options{ClusterCIDRs: pfx("10.0.0.0/8")}, 0); rs.IPv6 != nil {
		t.Error("ipv6 chains without IPv6")
	}
	text := NoTrackRules(Options{ClusterCIDRs: pfx("10.9.0.0/16")}, 0).Text(IPv4)
	want := "*raw\n" +
		":FLATMESH-NOTRACK - [0:0]\n" +
		"-A FLATMESH-NOTRACK -s 10.9.0.0/16 -d 10.9.0.0/16 -j CT --notrack\n" +
		"-I PREROUTING 1 -j FLATMESH-NOTRACK\n" +
		":FLATMESH-NOTRACK-OUT - [0:0]\n" +
		"-A FLATMESH-NOTRACK-OUT -s 10.9.0.0/16 -d 10.9.0.0/16 -j CT --notrack\n" +
		"-I OUTPUT 1 -j FLATMESH-NOTRACK-OUT\n" +
		"COMMIT\n"
	if text != want {
		t.Errorf("Text:\n%s\nwant:\n%s", text, want)
	}
}

// dockerWithRaw is Docker's ruleset plus an empty raw table, as
// iptables-save shows it once anything created the table.
func dockerWithRaw(t *testing.T) saved {
	t.Helper()
	b, err := os.ReadFile("testdata/docker.save")
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseSave(string(b) + "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNoTrackConvergeAndRemove(t *testing.T) {
	base := dockerWithRaw(t)
	want := NoTrackRules(vxlanOpts, 0).IPv4
	s := converge(t, want, base)
	for _, c := range want {
		if r := s.tables["raw"].rules[c.Hook]; len(r) != 1 || r[0] != c.Jump {
			t.Errorf("raw %s: %q", c.Hook, r)
		}
	}
	// The forwarding chains go in beside it without disturbing it.
	s = converge(t, Rules(vxlanOpts).IPv4, s)
	if p := problems(IPv4, want, s); len(p) != 0 {
		t.Errorf("notrack problems after Ensure of the other chains: %q", p)
	}
	// A changed cluster CIDR refills both chains in one transaction.
	moved := vxlanOpts
	moved.ClusterCIDRs = pfx("10.214.0.0/16")
	if p := problems(IPv4, NoTrackRules(moved, 0).IPv4, s); len(p) != 2 {
		t.Errorf("problems with a moved CIDR: %q", p)
	}
	s = converge(t, NoTrackRules(moved, 0).IPv4, s)

	text := planRemove(noTrackChains(Options{}, IPv4, 0), s)
	s, err := simulate(s, text)
	if err != nil {
		t.Fatalf("remove plan:\n%s\n%v", text, err)
	}
	if s.tables["raw"].has(NoTrackChain) || s.tables["raw"].has(NoTrackOutputChain) ||
		len(s.tables["raw"].rules["PREROUTING"])+len(s.tables["raw"].rules["OUTPUT"]) != 0 {
		t.Errorf("raw after remove: %+v", s.tables["raw"])
	}
	if !s.tables["filter"].has(ForwardChain) {
		t.Error("removing notrack removed the forwarding chain")
	}
	if again := planRemove(noTrackChains(Options{}, IPv4, 0), s); again != "" {
		t.Errorf("second remove plans:\n%s", again)
	}
}

func TestNoTrackTunnelPort(t *testing.T) {
	rs := NoTrackRules(Options{ClusterCIDRs: pfx("10.9.0.0/16")}, 4789)
	pre, out := rs.IPv4[0].Rules, rs.IPv4[1].Rules
	if len(pre) != 2 || pre[0] != "-p udp -m udp --dport 4789 -m addrtype --dst-type LOCAL -j CT --notrack" {
		t.Errorf("prerouting %q", pre)
	}
	if len(out) != 2 || out[0] != "-p udp -m udp --dport 4789 -j CT --notrack" {
		t.Errorf("output %q", out)
	}
	s := converge(t, rs.IPv4, dockerWithRaw(t))
	// Another port refills both chains.
	if p := problems(IPv4, NoTrackRules(Options{ClusterCIDRs: pfx("10.9.0.0/16")}, 8472).IPv4, s); len(p) != 2 {
		t.Errorf("problems with another port: %q", p)
	}
	for _, bad := range []int{-1, 70000} {
		if r := NoTrackRules(Options{}, bad).IPv4[0].Rules; len(r) != 0 {
			t.Errorf("port %d gave rules %q", bad, r)
		}
	}
}

// With the local underlay address known, the tunnel's packets are matched
// by it (no route lookup per packet); an address of the other family
// leaves that family on the lookup.
func TestNoTrackTunnelLocal(t *testing.T) {
	o := Options{ClusterCIDRs: pfx("10.9.0.0/16", "fd09::/64"), TunnelLocal: netip.MustParseAddr("192.168.56.11"), IPv6: true}
	rs := NoTrackRules(o, 4789)
	if pre := rs.IPv4[0].Rules; len(pre) != 2 || pre[0] != "-d 192.168.56.11/32 -p udp -m udp --dport 4789 -j CT --notrack" {
		t.Errorf("ipv4 prerouting %q", pre)
	}
	if pre := rs.IPv6[0].Rules; len(pre) != 2 || !strings.Contains(pre[0], "addrtype --dst-type LOCAL") {
		t.Errorf("ipv6 prerouting %q", pre)
	}
	o.TunnelLocal = netip.MustParseAddr("::ffff:192.168.56.11")
	if err := o.Validate(); err == nil {
		t.Error("an IPv4-mapped tunnel address passed Validate")
	}
}
