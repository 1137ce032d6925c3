package firewall

import (
	"strings"
	"testing"
)

// convergeNeeded plans with planNeeded and applies until the plan is empty
// (at most twice), then checks that problemsNeeded sees nothing.
func convergeNeeded(t *testing.T, want []Chain, s saved) saved {
	t.Helper()
	for i := range 2 {
		text := planNeeded(want, s, true)
		if text == "" {
			if p := problemsNeeded(IPv4, want, s, true); len(p) != 0 {
				t.Fatalf("problems after converging: %q", p)
			}
			return s
		}
		if i == 1 {
			t.Fatalf("second pass plans something:\n%s", text)
		}
		var err error
		if s, err = simulate(s, text); err != nil {
			t.Fatalf("applying plan:\n%s\n%v", text, err)
		}
	}
	return s
}

func mustParse(t *testing.T, text string) saved {
	t.Helper()
	s, err := parseSave(text)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// On a host whose FORWARD accepts everything and has no rule, the FORWARD
// chain is left out (it would change nothing); Docker's DROP brings it in;
// Docker gone again takes it out. Masquerade keeps the nat chain.
func TestOnlyWhenNeededForward(t *testing.T) {
	want := Rules(vxlanOpts).IPv4
	s := convergeNeeded(t, want, saved{})
	if s.table("filter").has(ForwardChain) || len(s.table("filter").rules["FORWARD"]) != 0 {
		t.Fatalf("FORWARD chain installed on an open FORWARD: %+v", s.table("filter"))
	}
	if !s.table("nat").has(PostroutingChain) {
		t.Fatal("masquerade on, but no nat chain")
	}
	// Docker's rules arrive (FORWARD DROP): the chain is needed, first.
	docker := dockerState(t)
	for name, tbl := range docker.tables {
		if s.tables[name] == nil {
			s.tables[name] = tbl
			continue
		}
		for c, p := range tbl.chains {
			s.tables[name].chains[c] = p
		}
		for c, r := range tbl.rules {
			s.tables[name].rules[c] = append(s.tables[name].rules[c], r...)
		}
	}
	if p := problemsNeeded(IPv4, want, s, true); len(p) != 2 {
		t.Fatalf("problems with Docker's DROP = %q, want the missing chain and jump", p)
	}
	s = convergeNeeded(t, want, s)
	if r := s.table("filter").rules["FORWARD"]; r[0] != fwdJump {
		t.Fatalf("FORWARD under Docker = %q", r)
	}
	// Only the policy: ACCEPT with one foreign rule still needs it.
	busy := mustParse(t, "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -i eth9 -j DROP\nCOMMIT\n")
	if !want[0].neededIn(busy) {
		t.Error("a foreign DROP rule in FORWARD does not make the chain needed")
	}
	if !want[0].neededIn(mustParse(t, "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n")) {
		t.Error("policy DROP does not make the chain needed")
	}
	// Docker flushed and the policy back to ACCEPT: ours is removed.
	open := mustParse(t, "*filter\n:FORWARD ACCEPT [0:0]\n:"+ForwardChain+" - [0:0]\n-A FORWARD "+fwdJump+
		"\n-A "+ForwardChain+" -s 10.213.0.0/16 -i flatmesh0 -j ACCEPT\nCOMMIT\n")
	p := problemsNeeded(IPv4, want[:1], open, true)
	if len(p) != 1 || !strings.Contains(p[0], "changes nothing") {
		t.Fatalf("problems with an unneeded chain = %q", p)
	}
	if s = convergeNeeded(t, want[:1], open); s.table("filter").has(ForwardChain) || len(s.table("filter").rules["FORWARD"]) != 0 {
		t.Fatalf("unneeded chain not removed: %+v", s.table("filter"))
	}
	// Without OnlyWhenNeeded every chain is installed, as before.
	if keep, drop := split(want, saved{}, false); len(keep) != len(want) || len(drop) != 0 {
		t.Fatalf("split without only = %d, %d", len(keep), len(drop))
	}
}

// Without masquerade the nat chain holds ACCEPTs only: needed only before
// another program's nat rule.
func TestOnlyWhenNeededNat(t *testing.T) {
	off := vxlanOpts
	off.Masquerade = false
	want := Rules(off).IPv4
	if s := convergeNeeded(t, want, saved{}); len(s.tables) != 0 {
		t.Fatalf("masquerade off on an empty host installed %+v", s.tables)
	}
	blanket := mustParse(t, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n")
	s := convergeNeeded(t, want, blanket)
	if r := s.table("nat").rules["POSTROUTING"]; len(r) != 2 || r[0] != natJump {
		t.Fatalf("POSTROUTING = %q", r)
	}
	// The tunnel-port INPUT chain drops strangers: always installed.
	o := off
	o.TunnelPorts, o.Members = []uint16{4789}, Addrs(pfx("192.168.56.11/32"))
	if s := convergeNeeded(t, Rules(o).IPv4, saved{}); !s.table("filter").has(InputChain) {
		t.Fatal("the tunnel-port chain was left out")
	}
}

// The notrack chains go in only where something tracks connections.
func TestOnlyWhenNeededNoTrack(t *testing.T) {
	nt := NoTrackRules(vxlanOpts, 4789).IPv4
	cases := []struct {
		name, save string
		want       bool
	}{
		{"nothing", "", false},
		{"filter without state matches", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp -m udp --dport 4789 -j DROP\nCOMMIT\n", false},
		{"a nat table", "*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n", true},
		{"a state match", "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n", true},
		{"a CT target elsewhere", "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -j CT --helper tftp\nCOMMIT\n", true},
		{"only our own notrack chains", "*raw\n:PREROUTING ACCEPT [0:0]\n:" + NoTrackChain + " - [0:0]\n-A PREROUTING " +
			nt[0].Jump + "\n-A " + NoTrackChain + " -s 10.213.0.0/16 -d 10.213.0.0/16 -j CT --notrack\nCOMMIT\n", false},
	}
	for _, c := range cases {
		if got := nt[0].neededIn(mustParse(t, c.save)); got != c.want {
			t.Errorf("%s: needed = %v, want %v", c.name, got, c.want)
		}
	}
	// nf_tables' own account, when read, decides instead of the nat table
	// iptables-save prints (it shows nat's built-in chains even where none
	// is hooked) and adds native nftables users iptables-save does not show.
	nat := mustParse(t, cases[2].save)
	for _, c := range []struct {
		name string
		have saved
		u    nftUse
		want bool
	}{
		{"a nat table of user chains only", nat, nftUse{}, false},
		{"a hooked nat chain", nat, nftUse{natChain: "ip nat POSTROUTING"}, true},
		{"a native ct rule, no iptables table", mustParse(t, ""), nftUse{ctRule: "inet firewalld filter_INPUT"}, true},
		{"a state match beside an untracking nf_tables", mustParse(t, cases[3].save), nftUse{}, true},
		{"iptables-legacy tables beside", saved{tables: map[string]*savedTable{}, legacy: true}, nftUse{}, true},
	} {
		c.have.nft = &c.u
		if got := nt[0].neededIn(c.have); got != c.want {
			t.Errorf("%s: needed = %v, want %v", c.name, got, c.want)
		}
		if user := conntrackUser(c.have); (user != "") != c.want {
			t.Errorf("%s: conntrackUser = %q", c.name, user)
		}
	}
	for save, want := range map[string]string{
		cases[1].save: "", cases[2].save: "a nat table", cases[3].save: "rule in filter FORWARD",
		cases[4].save: "rule in raw PREROUTING", cases[5].save: "",
	} {
		if got := conntrackUser(mustParse(t, save)); got != want {
			t.Errorf("conntrackUser(%q) = %q, want %q", save, got, want)
		}
	}
	s := convergeNeeded(t, nt, mustParse(t, cases[2].save))
	if !s.table("raw").has(NoTrackChain) || !s.table("raw").has(NoTrackOutputChain) {
		t.Fatalf("notrack chains missing beside a nat table: %+v", s.table("raw"))
	}
	delete(s.tables, "nat")
	if s = convergeNeeded(t, nt, s); s.table("raw").has(NoTrackChain) || s.table("raw").has(NoTrackOutputChain) {
		t.Fatalf("notrack chains kept without a conntrack user: %+v", s.table("raw"))
	}
}
