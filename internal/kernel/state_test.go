package kernel

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

var (
	macA = MAC{0x0e, 0xfd, 0, 0, 0, 1}
	macB = MAC{0x0e, 0xfd, 0, 0, 0, 2}
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func sampleState() State {
	return State{
		Addrs:  []Addr{{Dev: "br", Prefix: pfx("10.213.0.1/26")}},
		Neighs: []Neigh{{Dev: "vx", IP: ip("10.213.0.65"), MAC: macA}},
		FDB:    []FDB{{Dev: "vx", MAC: macA, Dst: ip("198.18.0.2")}},
		Routes: []Route{{Dst: pfx("10.213.0.64/26"), Gw: ip("10.213.0.65"), Dev: "vx", Src: ip("10.213.0.1"), OnLink: true}},
	}
}

func TestDiffSameStateIsEmpty(t *testing.T) {
	s := sampleState()
	if p := Diff(s, s); !p.Empty() {
		t.Fatalf("diff of a state with itself: %s (%+v)", p, p)
	}
	// The kernel's spelling (table 254, IPv4-mapped addresses, unmasked
	// destination) must compare equal to the caller's.
	have := sampleState()
	have.Routes[0].Table = 254
	have.Routes[0].Dst = pfx("10.213.0.70/26")
	have.FDB[0].Dst = netip.AddrFrom16(ip("198.18.0.2").As16())
	if p := Diff(s, have); !p.Empty() {
		t.Fatalf("diff against kernel spelling: %s (%+v)", p, p)
	}
}

func TestDiffAddReplaceDelete(t *testing.T) {
	want := sampleState()
	have := State{
		Addrs:  []Addr{{Dev: "br", Prefix: pfx("10.213.0.129/26")}},
		Neighs: []Neigh{{Dev: "vx", IP: ip("10.213.0.65"), MAC: macB}, {Dev: "vx", IP: ip("10.213.0.193"), MAC: macB}},
		FDB:    []FDB{{Dev: "vx", MAC: macA, Dst: ip("198.18.0.9")}},
		Routes: []Route{{Dst: pfx("10.213.0.64/26"), Gw: ip("10.213.0.65"), Dev: "vx", OnLink: true}},
	}
	p := Diff(want, have)
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %+v, want %+v", name, got, want)
		}
	}
	check("add addrs", p.Add.Addrs, want.Addrs)
	check("del addrs", p.Del.Addrs, have.Addrs)
	check("replace neighs", p.Replace.Neighs, want.Neighs)
	check("del neighs", p.Del.Neighs, have.Neighs[1:])
	check("replace fdb", p.Replace.FDB, want.FDB)
	check("add fdb", p.Add.FDB, []FDB(nil))
	route := want.Routes[0]
	route.Table = 254
	check("replace routes", p.Replace.Routes, []Route{route})
	check("del routes", p.Del.Routes, []Route(nil))
	if got := p.String(); got != "add 1 addr, replace 1 neigh, replace 1 fdb, replace 1 route, del 1 addr, del 1 neigh" {
		t.Errorf("plan summary = %q", got)
	}
	// Applying the plan to have, as the kernel would, gives want: the
	// second pass plans nothing.
	if p2 := Diff(want, simulate(have, p)); !p2.Empty() {
		t.Errorf("second pass: %s", p2)
	}
}

// simulate applies a plan to a state the way the kernel would: replace
// overwrites the object of the same identity, delete removes exact matches.
func simulate(have State, p Plan) State {
	out := have.Normalize()
	out.Addrs = apply(out.Addrs, p.Add.Addrs, nil, p.Del.Addrs, func(a Addr) Addr { return a })
	out.Neighs = apply(out.Neighs, p.Add.Neighs, p.Replace.Neighs, p.Del.Neighs, func(n Neigh) devIP { return devIP{n.Dev, n.IP} })
	out.FDB = apply(out.FDB, p.Add.FDB, p.Replace.FDB, p.Del.FDB, func(f FDB) devMAC { return devMAC{f.Dev, f.MAC} })
	out.Routes = apply(out.Routes, p.Add.Routes, p.Replace.Routes, p.Del.Routes,
		func(r Route) routeKey { return routeKey{r.Table, r.Dst, r.Metric} })
	return out
}

func apply[T comparable, K comparable](have, add, repl, del []T, key func(T) K) []T {
	out := append([]T(nil), have...)
	for _, r := range repl {
		for i := range out {
			if key(out[i]) == key(r) {
				out[i] = r
				break
			}
		}
	}
	out = append(out, add...)
	var kept []T
	for _, x := range out {
		drop := false
		for _, d := range del {
			drop = drop || d == x
		}
		if !drop {
			kept = append(kept, x)
		}
	}
	return kept
}

func TestDiffDuplicateObserved(t *testing.T) {
	want := State{FDB: []FDB{{Dev: "vx", MAC: macA, Dst: ip("198.18.0.2")}}}
	have := State{FDB: []FDB{
		{Dev: "vx", MAC: macA, Dst: ip("198.18.0.7")},
		{Dev: "vx", MAC: macA, Dst: ip("198.18.0.2")},
		{Dev: "vx", MAC: macA, Dst: ip("198.18.0.8")},
	}}
	p := Diff(want, have)
	if len(p.Add.FDB)+len(p.Replace.FDB) != 0 || len(p.Del.FDB) != 2 {
		t.Fatalf("want only the two extra remotes deleted, got %+v", p)
	}
	for _, f := range p.Del.FDB {
		if f.Dst == ip("198.18.0.2") {
			t.Fatalf("deleted the wanted remote: %+v", p.Del.FDB)
		}
	}
}

func TestDiffDeletesOnlyObserved(t *testing.T) {
	have := sampleState()
	p := Diff(State{}, have)
	if p.Add.Len()+p.Replace.Len() != 0 || p.Del.Len() != have.Len() {
		t.Fatalf("empty want must delete exactly what was observed: %+v", p)
	}
}

func TestValidate(t *testing.T) {
	if err := sampleState().Validate(); err != nil {
		t.Fatalf("valid state: %v", err)
	}
	bad := []struct {
		name string
		s    State
		msg  string
	}{
		{"dup route", State{Routes: []Route{{Dst: pfx("10.0.0.0/24"), Dev: "a"}, {Dst: pfx("10.0.0.5/24"), Dev: "b"}}}, "listed twice"},
		{"no dev", State{Routes: []Route{{Dst: pfx("10.0.0.0/24")}}}, "needs a device"},
		{"family", State{Routes: []Route{{Dst: pfx("10.0.0.0/24"), Dev: "a", Gw: ip("fd00::1")}}}, "gateway family"},
		{"zero mac", State{Neighs: []Neigh{{Dev: "a", IP: ip("10.0.0.1")}}}, "non-zero mac"},
		{"dup neigh", State{Neighs: []Neigh{{Dev: "a", IP: ip("10.0.0.1"), MAC: macA}, {Dev: "a", IP: ip("10.0.0.1"), MAC: macB}}}, "listed twice"},
		{"fdb dst", State{FDB: []FDB{{Dev: "a", MAC: macA}}}, "destination"},
		{"addr", State{Addrs: []Addr{{Prefix: pfx("10.0.0.1/24")}}}, "needs a device"},
	}
	for _, tc := range bad {
		err := tc.s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.msg)
		}
	}
}

func TestScopeCheck(t *testing.T) {
	sc := Scope{AddrLinks: []string{"br"}, NeighLinks: []string{"vx"}, FDBLinks: []string{"vx"}, RouteLinks: []string{"vx"}}
	if err := sc.Check(sampleState()); err != nil {
		t.Fatalf("in scope: %v", err)
	}
	s := sampleState()
	s.Routes[0].Dev = "eth0"
	if err := sc.Check(s); err == nil || !strings.Contains(err.Error(), `"eth0" is not in the owned scope`) {
		t.Fatalf("out of scope route: %v", err)
	}
	if got := sc.Links(); !reflect.DeepEqual(got, []string{"br", "vx"}) {
		t.Fatalf("links = %v", got)
	}
}

func TestRouteString(t *testing.T) {
	r := Route{Dst: pfx("10.213.0.64/26"), Gw: ip("10.213.0.65"), Dev: "vx", Src: ip("10.213.0.1"), OnLink: true, MTU: 1400, Metric: 5, Table: 7}
	if got, want := r.String(), "10.213.0.64/26 via 10.213.0.65 dev vx src 10.213.0.1 onlink mtu 1400 metric 5 table 7"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestConnected(t *testing.T) {
	got := Connected([]Addr{
		{Dev: "eth0", Prefix: netip.MustParsePrefix("10.0.0.5/24")},
		{Dev: "eth0", Prefix: netip.MustParsePrefix("10.0.9.5/32")}, // connects no one
		{Dev: "eth0", Prefix: netip.MustParsePrefix("fd00::5/64")},
		{Dev: "eth0", Prefix: netip.MustParsePrefix("fd00::6/128")},
	})
	if len(got) != 2 || got[0] != pfx("10.0.0.5/24") || got[1] != pfx("fd00::5/64") {
		t.Fatalf("Connected = %v", got)
	}
}
