package flat

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestPlanSwitchOrder(t *testing.T) {
	s := testHost()
	plan, err := PlanSwitch(s, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"create bridge fmbr0 (mac 52:54:00:12:34:56, mtu 1500, stp off, forward delay 0, up)",
		"add address 192.168.1.10/24 brd 192.168.1.255 label fmbr0 metric 100 to fmbr0",
		"add address 192.168.1.11/24 brd 192.168.1.255 label fmbr0:1 to fmbr0",
		"add address 2001:db8::10/64 flags 0x2 to fmbr0",
		"enslave eth0 to fmbr0",
		"add route 172.30.0.0/24 dev fmbr0 proto 4 scope 253 src 192.168.1.10 metric 0",
		"add route default via 192.168.1.1 dev fmbr0 proto 4 scope 0 metric 100",
		"add route 10.9.0.0/16 via 192.168.1.254 dev fmbr0 table 100 proto 3 scope 0 metric 5 mtu 1400",
		"add route default via 2001:db8::1 dev fmbr0 proto 4 scope 0 metric 1024",
		"delete route default via 192.168.1.1 dev eth0 proto 4 scope 0 metric 100",
		"delete route 10.9.0.0/16 via 192.168.1.254 dev eth0 table 100 proto 3 scope 0 metric 5 mtu 1400",
		"delete route default via 2001:db8::1 dev eth0 proto 4 scope 0 metric 1024",
		"delete route 172.30.0.0/24 dev eth0 proto 4 scope 253 src 192.168.1.10 metric 0",
		"delete address 192.168.1.11/24 from eth0",
		"delete address 192.168.1.10/24 from eth0",
		"delete address 2001:db8::10/64 from eth0",
		"replace address 2001:db8::10/64 on fmbr0",
	}
	var got []string
	for _, st := range plan.Steps {
		got = append(got, st.String())
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The added addresses keep everything but the label, which follows the
	// bridge.
	added := plan.Steps[1].Addr
	if added.Metric != 100 || added.Broadcast != s.Addrs[0].Broadcast || added.Flags != s.Addrs[0].Flags {
		t.Errorf("moved address lost attributes: %+v", added)
	}
}

func TestPlanSwitchLeavesKernelAndRARoutes(t *testing.T) {
	s := testHost()
	p := netip.MustParsePrefix
	s.Routes = append(s.Routes,
		Route{Table: tableMain, Type: 1, Protocol: protoKernel, Scope: 253, Dst: p("192.168.1.0/24"), Src: netip.MustParseAddr("192.168.1.10"), Dev: "eth0", Metric: 100},
		Route{Table: tableMain, Type: 1, Protocol: protoRA, Dst: p("2001:db8:1::/64"), Gw: netip.MustParseAddr("fe80::1"), Dev: "eth0", Metric: 1024},
	)
	plan, err := PlanSwitch(s, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range plan.Steps {
		if (st.Kind == StepRouteAdd || st.Kind == StepRouteDel) && !st.Route.movable() {
			t.Errorf("plan touches a route the kernel manages: %s", st)
		}
		if st.Addr.linkLocal6() {
			t.Errorf("plan moves a link-local address: %s", st)
		}
	}
}

// TestSwitchThenRestoreModel runs the plans against the kernel model: the
// full switch puts the whole host configuration on the bridge, planning
// again gives nothing, and a restore gives back the original exactly.
func TestSwitchThenRestoreModel(t *testing.T) {
	orig := testHost()
	o := testOptions()
	h := newFakeHost(orig)
	plan, err := PlanSwitch(orig, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.applyPlan(plan, -1); err != nil {
		t.Fatal(err)
	}
	sw := h.snapshot("eth0", "fmbr0")
	if sw.NIC.Master != "fmbr0" || sw.Bridge == nil || sw.Bridge.Link.MAC != orig.NIC.MAC {
		t.Fatalf("after switch: nic %+v bridge %+v", sw.NIC, sw.Bridge)
	}
	if len(sw.Addrs) != 1 || !sw.Addrs[0].linkLocal6() || len(sw.Routes) != 0 {
		t.Errorf("NIC keeps more than its link-local address: %+v %+v", sw.Addrs, sw.Routes)
	}
	if d := diffAddrs("bridge", relabelAll(movableAddrs(orig.Addrs), "eth0", "fmbr0"), sw.Bridge.Addrs); len(d) > 0 {
		t.Errorf("bridge addresses: %v", d)
	}
	if d := diffRoutes("bridge", onDev(orig.Routes, "fmbr0"), sw.Bridge.Routes); len(d) > 0 {
		t.Errorf("bridge routes: %v", d)
	}
	if gw, ok := Gateway(sw); !ok || gw != netip.MustParseAddr("192.168.1.1") {
		t.Errorf("gateway after switch = %v %v", gw, ok)
	}
	again, err := PlanSwitch(sw, o)
	if err != nil || !again.Empty() {
		t.Fatalf("second switch plan = %v, %v; want empty", again, err)
	}
	restore := PlanRestore(orig, sw)
	if err := h.applyPlan(restore, -1); err != nil {
		t.Fatal(err)
	}
	if d := Diff(orig, h.snapshot("eth0", "fmbr0")); len(d) > 0 {
		t.Fatalf("after restore:\n%s\nplan:\n%s", strings.Join(d, "\n"), restore)
	}
	if p := PlanRestore(orig, h.snapshot("eth0", "fmbr0")); !p.Empty() {
		t.Errorf("restore of a restored host plans:\n%s", p)
	}
}

// TestRollbackFromEveryStep stops the switch-over after each step in turn
// and checks that PlanRestore brings the model back to the original.
func TestRollbackFromEveryStep(t *testing.T) {
	orig := testHost()
	plan, err := PlanSwitch(orig, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n <= len(plan.Steps); n++ {
		h := newFakeHost(orig)
		if err := h.applyPlan(plan, n); err != nil {
			t.Fatal(err)
		}
		rb := PlanRestore(orig, h.snapshot("eth0", "fmbr0"))
		if err := h.applyPlan(rb, -1); err != nil {
			t.Fatalf("after %d steps: %v", n, err)
		}
		if d := Diff(orig, h.snapshot("eth0", "fmbr0")); len(d) > 0 {
			t.Errorf("rollback after %d steps leaves:\n%s\nrollback plan:\n%s", n, strings.Join(d, "\n"), rb)
		}
	}
}

func TestPlanRestoreFixesLinkAndExtras(t *testing.T) {
	rec := testHost()
	cur := testHost()
	cur.NIC.MTU, cur.NIC.Up, cur.NIC.MAC = 9000, false, "02:00:00:00:00:01"
	extraAddr := Addr{Prefix: netip.MustParsePrefix("10.1.1.1/24"), Valid: Forever, Preferred: Forever}
	extraRoute := Route{Table: tableMain, Type: 1, Protocol: 4, Dst: netip.MustParsePrefix("10.2.0.0/16"), Gw: netip.MustParseAddr("10.1.1.254"), Dev: "eth0"}
	cur.Addrs = append(cur.Addrs, extraAddr)
	cur.Routes = append(cur.Routes, extraRoute)
	cur.Addrs[2].Flags |= addrFlagNoDAD // changed flag: replaced, not re-added
	got := PlanRestore(rec, cur).Steps
	want := []Step{
		{Kind: StepSetMTU, Link: "eth0", MTU: 1500},
		{Kind: StepSetMAC, Link: "eth0", MAC: "52:54:00:12:34:56"},
		{Kind: StepSetUp, Link: "eth0", Up: true},
		{Kind: StepAddrReplace, Link: "eth0", Addr: rec.Addrs[2]},
		{Kind: StepRouteDel, Route: extraRoute},
		{Kind: StepAddrDel, Link: "eth0", Addr: extraAddr},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan:\n%s\nwant:\n%s", Plan{got}, Plan{want})
	}
}

func TestPlanRestoreNICDown(t *testing.T) {
	rec := testHost()
	rec.NIC.Up = false
	cur := testHost()
	got := PlanRestore(rec, cur).Steps
	if len(got) != 1 || got[0] != (Step{Kind: StepSetUp, Link: "eth0", Up: false}) {
		t.Fatalf("plan = %v", got)
	}
}

func TestDiffNormalisesLifetimesAndTentative(t *testing.T) {
	a := testHost()
	a.Addrs[0].Valid, a.Addrs[0].Preferred = 300, 200
	b := testHost()
	b.Addrs[0].Valid, b.Addrs[0].Preferred = 250, 150
	b.Addrs[2].Flags |= addrFlagTentative
	if d := Diff(a, b); len(d) != 0 {
		t.Errorf("diff = %v, want none", d)
	}
	b.Addrs[0].Valid = Forever
	b.Routes[0].Metric = 101
	b.NIC.Up = false
	if d := Diff(a, b); len(d) != 4 { // link, address, missing route, extra route
		t.Errorf("diff = %q, want 4 lines", d)
	}
}

func relabelAll(addrs []Addr, from, to string) []Addr {
	var out []Addr
	for _, a := range addrs {
		a.Label = relabel(a.Label, from, to)
		out = append(out, a)
	}
	return out
}

func onDev(routes []Route, dev string) []Route {
	var out []Route
	for _, r := range routes {
		r.Dev = dev
		out = append(out, r)
	}
	return out
}
