package firewall

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var vxlanOpts = Options{
	Bridge: "flatmesh0", Overlay: "flatmesh.vx",
	ClusterCIDRs: pfx("10.213.0.0/16"), NoNAT: pfx("192.168.56.11/32", "192.168.56.12/32"),
	Masquerade: true,
}

func dockerState(t *testing.T) saved {
	t.Helper()
	b, err := os.ReadFile("testdata/docker.save")
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseSave(string(b))
	if err != nil {
		t.Fatalf("parsing docker.save: %v", err)
	}
	return s
}

// simulate applies iptables-restore --noflush input to a copy of s the way
// the real program does for the commands the planners emit, failing (with
// s unchanged) where iptables-restore would fail.
func simulate(s saved, text string) (saved, error) {
	out := saved{tables: map[string]*savedTable{}, legacy: s.legacy}
	for name, t := range s.tables {
		c := &savedTable{chains: maps.Clone(t.chains), rules: map[string][]string{}}
		for k, v := range t.rules {
			c.rules[k] = slices.Clone(v)
		}
		out.tables[name] = c
	}
	builtins := map[string][]string{"filter": {"INPUT", "FORWARD", "OUTPUT"},
		"nat": {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}, "raw": {"PREROUTING", "OUTPUT"}}
	var cur *savedTable
	for n, line := range strings.Split(strings.TrimSpace(text), "\n") {
		fail := func(why string) (saved, error) { return s, fmt.Errorf("line %d %q: %s", n+1, line, why) }
		f := strings.Fields(line)
		switch {
		case line == "COMMIT":
			cur = nil
		case strings.HasPrefix(line, "*"):
			name := line[1:]
			if out.tables[name] == nil {
				out.tables[name] = &savedTable{chains: map[string]string{}, rules: map[string][]string{}}
			}
			cur = out.tables[name]
			for _, b := range builtins[name] {
				if !cur.has(b) {
					cur.chains[b] = "ACCEPT"
				}
			}
		case cur == nil:
			return fail("outside a table")
		case strings.HasPrefix(line, ":"):
			cur.chains[f[0][1:]] = f[1]
			cur.rules[f[0][1:]] = nil
		case len(f) < 2 || !cur.has(f[1]):
			return fail("no such chain")
		case f[0] == "-A":
			cur.rules[f[1]] = append(cur.rules[f[1]], strings.Join(f[2:], " "))
		case f[0] == "-I":
			pos, err := strconv.Atoi(f[2])
			if err != nil || pos < 1 || pos > len(cur.rules[f[1]])+1 {
				return fail("bad position")
			}
			cur.rules[f[1]] = slices.Insert(cur.rules[f[1]], pos-1, strings.Join(f[3:], " "))
		case f[0] == "-D":
			i := slices.Index(cur.rules[f[1]], strings.Join(f[2:], " "))
			if i < 0 {
				return fail("no such rule")
			}
			cur.rules[f[1]] = slices.Delete(cur.rules[f[1]], i, i+1)
		case f[0] == "-F":
			cur.rules[f[1]] = nil
		case f[0] == "-X":
			for from, rules := range cur.rules {
				for _, r := range rules {
					if isJumpTo(r, f[1]) {
						return fail("chain still referenced from " + from)
					}
				}
			}
			if len(cur.rules[f[1]]) > 0 {
				return fail("chain not empty")
			}
			delete(cur.chains, f[1])
			delete(cur.rules, f[1])
		default:
			return fail("command not simulated")
		}
	}
	return out, nil
}

// converge plans and applies until the plan is empty, at most twice.
func converge(t *testing.T, want []Chain, s saved) saved {
	t.Helper()
	text := planEnsure(want, s)
	if text == "" {
		return s
	}
	s, err := simulate(s, text)
	if err != nil {
		t.Fatalf("applying plan:\n%s\n%v", text, err)
	}
	if again := planEnsure(want, s); again != "" {
		t.Fatalf("second pass plans something:\n%s", again)
	}
	if p := problems(IPv4, want, s); len(p) != 0 {
		t.Fatalf("problems after converging: %q", p)
	}
	return s
}

func TestEnsureOverDocker(t *testing.T) {
	docker := dockerState(t)
	want := Rules(vxlanOpts).IPv4
	got := converge(t, want, docker)

	for _, c := range want {
		if r := got.tables[c.Table].rules[c.Hook]; r[0] != c.Jump {
			t.Errorf("%s starts with %q, want our jump", c.Hook, r[0])
		}
		if !slices.Equal(got.tables[c.Table].rules[c.Name], c.Rules) {
			t.Errorf("chain %s = %q", c.Name, got.tables[c.Table].rules[c.Name])
		}
	}
	// Docker's rules are all there, in their order, after ours.
	for tname, tbl := range docker.tables {
		for chain, rules := range tbl.rules {
			have := got.tables[tname].rules[chain]
			if chain == "FORWARD" || chain == "POSTROUTING" {
				have = have[1:]
			}
			if !slices.Equal(have, rules) {
				t.Errorf("%s/%s changed:\n got %q\nwant %q", tname, chain, have, rules)
			}
		}
		if got.tables[tname].chains["FORWARD"] != tbl.chains["FORWARD"] {
			t.Errorf("%s FORWARD policy changed", tname)
		}
	}
}

func TestEnsureFromNothing(t *testing.T) {
	want := Rules(vxlanOpts).IPv4
	converge(t, want, saved{})
	if got := planEnsure(want, saved{}); got != Rules(vxlanOpts).Text(IPv4) {
		t.Fatalf("plan from nothing differs from Text:\n%s", got)
	}
}

func TestEnsureMovesDisplacedJump(t *testing.T) {
	want := Rules(vxlanOpts).IPv4
	s := converge(t, want, dockerState(t))
	// Docker restarts and puts DOCKER-USER back on top.
	s, err := simulate(s, "*filter\n-I FORWARD 1 -j DOCKER-USER\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	p := problems(IPv4, want, s)
	if len(p) != 1 || !strings.Contains(p[0], "is rule 2, not the first") {
		t.Fatalf("problems = %q", p)
	}
	wantPlan := "*filter\n-D FORWARD " + fwdJump + "\n-I FORWARD 1 " + fwdJump + "\nCOMMIT\n"
	if got := planEnsure(want, s); got != wantPlan {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, wantPlan)
	}
	s = converge(t, want, s)
	if r := s.tables["filter"].rules["FORWARD"]; r[0] != fwdJump || r[1] != "-j DOCKER-USER" {
		t.Fatalf("FORWARD = %q", r[:2])
	}
}

func TestEnsureFixesDuplicateAndOldJumps(t *testing.T) {
	want := Rules(vxlanOpts).IPv4
	s := converge(t, want, dockerState(t))
	s, err := simulate(s, "*filter\n-A FORWARD -j FLATMESH-FORWARD\nCOMMIT\n*nat\n-D POSTROUTING "+natJump+
		"\n-A POSTROUTING -m comment --comment \"an older flatmesh\" -j FLATMESH-POSTROUTING\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	p := problems(IPv4, want, s)
	if len(p) != 2 || !strings.Contains(p[0], "2 jumps from FORWARD") || !strings.Contains(p[1], "is rule 2, not the first") {
		t.Fatalf("problems = %q", p)
	}
	s = converge(t, want, s)
	for _, c := range want {
		if specs, _ := s.tables[c.Table].jumpsTo(c.Hook, c.Name); len(specs) != 1 {
			t.Fatalf("%s: jumps %q", c.Hook, specs)
		}
	}
}

func TestEnsureRewritesOnlyChangedChain(t *testing.T) {
	want := Rules(vxlanOpts).IPv4
	s := converge(t, want, dockerState(t))
	off := vxlanOpts
	off.Masquerade = false
	wantOff := Rules(off).IPv4
	p := problems(IPv4, wantOff, s)
	if len(p) != 1 || !strings.Contains(p[0], "FLATMESH-POSTROUTING in table nat holds 4 rules that differ from the 3") {
		t.Fatalf("problems = %q", p)
	}
	plan := planEnsure(wantOff, s)
	if strings.Contains(plan, "*filter") || !strings.HasPrefix(plan, "*nat\n:FLATMESH-POSTROUTING - [0:0]\n") ||
		strings.Contains(plan, "MASQUERADE") || strings.Contains(plan, "POSTROUTING 1") {
		t.Fatalf("plan:\n%s", plan)
	}
	converge(t, wantOff, s)
}

func TestRemove(t *testing.T) {
	docker := dockerState(t)
	own := familyChains(Options{}, IPv4)
	if got := planRemove(own, docker); got != "" {
		t.Fatalf("remove with nothing of ours plans:\n%s", got)
	}
	s := converge(t, Rules(vxlanOpts).IPv4, docker)
	// A stray jump from another chain must go too, or -X fails.
	s, err := simulate(s, "*filter\n-A DOCKER-USER -j FLATMESH-FORWARD\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	text := planRemove(own, s)
	s, err = simulate(s, text)
	if err != nil {
		t.Fatalf("applying remove plan:\n%s\n%v", text, err)
	}
	for tname, tbl := range s.tables {
		want := docker.tables[tname]
		if !maps.Equal(tbl.chains, want.chains) {
			t.Errorf("%s chains after remove: %v, want %v", tname, tbl.chains, want.chains)
		}
		for chain, rules := range want.rules {
			if !slices.Equal(tbl.rules[chain], rules) {
				t.Errorf("%s/%s after remove: %q", tname, chain, tbl.rules[chain])
			}
		}
	}
	if again := planRemove(own, s); again != "" {
		t.Fatalf("second remove plans:\n%s", again)
	}
}

func TestParseSave(t *testing.T) {
	s, err := parseSave("# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n" +
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [3:180]\n:X - [0:0]\n" +
		"-A FORWARD -m comment --comment \"a b\" -j X\n-A X -g FLATMESH-FORWARD\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	f := s.tables["filter"]
	if !s.legacy || f.chains["FORWARD"] != "DROP" || !f.has("X") || f.has("Y") {
		t.Fatalf("parsed %+v %+v", s, f)
	}
	if got := f.rules["FORWARD"]; !slices.Equal(got, []string{`-m comment --comment "a b" -j X`}) {
		t.Fatalf("FORWARD rules %q", got)
	}
	if specs, _ := f.jumpsTo("X", "FLATMESH-FORWARD"); len(specs) != 1 {
		t.Fatalf("goto not seen as a jump: %q", f.rules["X"])
	}
	if isJumpTo("-j FLATMESH-FORWARDX", ForwardChain) || isJumpTo("-m comment --comment FLATMESH-FORWARD", ForwardChain) {
		t.Fatal("isJumpTo matched a different target")
	}
	p := problems(IPv4, Rules(vxlanOpts).IPv4, s)
	if len(p) != 5 || !strings.Contains(p[0], "iptables-legacy") {
		t.Fatalf("problems = %q", p)
	}
	for _, bad := range []string{"-A FORWARD -j X\n", "*filter\n:\nCOMMIT\n", "*filter\n-Z FORWARD\nCOMMIT\n"} {
		if _, err := parseSave(bad); err == nil {
			t.Errorf("parseSave(%q) accepted", bad)
		}
	}
}

func TestWireGuardInputChain(t *testing.T) {
	o := Options{Bridge: "flatmesh0", Overlay: "flatmesh.wg", TunnelPorts: []uint16{51820},
		Members: []netip.Addr{netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("198.18.0.2")}}
	var in *Chain
	for _, c := range Rules(o).IPv4 {
		if c.Name == InputChain {
			c := c
			in = &c
		}
	}
	if in == nil || in.Hook != "INPUT" || in.Table != "filter" {
		t.Fatalf("no input chain: %+v", Rules(o).IPv4)
	}
	want := []string{
		"-p udp -m udp --dport 51820 -m set --match-set flatmesh-members src -j ACCEPT",
		"-p udp -m udp --dport 51820 -j DROP",
	}
	if !slices.Equal(in.Rules, want) {
		t.Errorf("rules %q, want %q", in.Rules, want)
	}
	for _, c := range Rules(Options{Bridge: "flatmesh0"}).IPv4 {
		if c.Name == InputChain {
			t.Error("input chain without a tunnel port")
		}
	}
}
