package flat

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// TestSwitchOverLive switches the lab host over while the plain machine
// pings it every 50 ms, checks the result, adopts it on a second run and
// restores it.
func TestSwitchOverLive(t *testing.T) {
	l := newLab(t)
	o := l.options(t)
	before := l.settled(t)
	if before.NIC == nil || len(before.Addrs) != 4 || before.Bridge != nil {
		t.Fatalf("lab host not as built: %+v", before)
	}
	ping, ping6 := startPing(t, l.plain, labHostIP, 60), startPing(t, l.plain, labHostIP6, 60)
	time.Sleep(time.Second)
	res, err := SwitchOver(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("switch-over: %d steps in %s, gateway %s (%s) answered", res.Steps, res.Took, res.Checked, res.CheckedMAC)
	checkLoss(t, "switch-over", ping, ping6)
	if res.Adopted || res.Checked != netip.MustParseAddr(labRouterIP) {
		t.Errorf("result %+v", res)
	}
	after := l.settled(t)
	checkSwitched(t, before, after, o.Bridge)
	l.pingsOK(t)

	// Second run: adopt, change nothing.
	res2, err := SwitchOver(context.Background(), o)
	if err != nil || !res2.Adopted {
		t.Fatalf("second switch-over: %+v, %v; want adopted", res2, err)
	}
	if d := Diff(after, l.settled(t)); len(d) > 0 {
		t.Fatalf("adoption changed the host:\n%s", strings.Join(d, "\n"))
	}

	// A port with a smaller MTU (a container veth) does not shrink the
	// bridge: its MTU is pinned.
	kerneltest.Veth(t, l.host, "fmfc0", l.host, "fmfc1")
	kerneltest.Run(t, "ip", "-n", l.host, "link", "set", "fmfc0", "mtu", "1400", "master", o.Bridge)
	if s := l.settled(t); s.Bridge.Link.MTU != before.NIC.MTU {
		t.Errorf("bridge MTU %d after adding a port with MTU 1400, want %d", s.Bridge.Link.MTU, before.NIC.MTU)
	}

	// Restore, with the same ping running.
	ping, ping6 = startPing(t, l.plain, labHostIP, 40), startPing(t, l.plain, labHostIP6, 40)
	time.Sleep(500 * time.Millisecond)
	if err := Restore(context.Background(), Options{StateDir: l.stateDir, NetnsPath: l.hostNS, Logger: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	checkLoss(t, "restore", ping, ping6)
	l.requireSame(t, before, "after restore")
	if _, err := os.Stat(recordPath(l.stateDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("record still there after restore: %v", err)
	}
	l.pingsOK(t)
	if err := Restore(context.Background(), o); err != nil {
		t.Errorf("second restore: %v", err)
	}
}

// checkLoss waits for the IPv4 and IPv6 pings and allows 2 lost each.
func checkLoss(t *testing.T, what string, pings ...*pinger) {
	t.Helper()
	for i, p := range pings {
		sent, lost := p.wait(t)
		family := []string{"IPv4", "IPv6"}[i]
		t.Logf("%s: %s ping every 50 ms from the plain machine: %d sent, %d lost", what, family, sent, lost)
		if lost > 2 {
			t.Errorf("%s: %d of %d %s pings lost, want at most 2", what, lost, sent, family)
		}
	}
}

// checkSwitched checks the host configuration moved to the bridge intact.
func checkSwitched(t *testing.T, before, after Snapshot, bridge string) {
	t.Helper()
	b := after.Bridge
	if b == nil || after.NIC.Master != bridge {
		t.Fatalf("NIC not in the bridge: %+v", after.NIC)
	}
	if b.Link.MAC != before.NIC.MAC || b.Link.MTU != before.NIC.MTU || !b.Link.Up || b.STP || b.ForwardDelay != 0 {
		t.Errorf("bridge %+v stp %v fwd %d; want MAC %s MTU %d, up, STP off, forward delay 0",
			b.Link, b.STP, b.ForwardDelay, before.NIC.MAC, before.NIC.MTU)
	}
	if gw, ok := Gateway(after); !ok || gw != netip.MustParseAddr(labRouterIP) {
		t.Errorf("default gateway after switch: %v %v", gw, ok)
	}
	want := relabelAll(movableAddrs(before.Addrs), before.NIC.Name, bridge)
	var got []Addr
	for _, a := range b.Addrs {
		if !a.linkLocal6() {
			got = append(got, a)
		}
	}
	if d := diffAddrs("bridge", want, got); len(d) > 0 {
		t.Errorf("bridge addresses:\n%s", strings.Join(d, "\n"))
	}
	if d := diffRoutes("bridge", onDev(movableRoutes(before.Routes), bridge), movableRoutes(b.Routes)); len(d) > 0 {
		t.Errorf("bridge routes:\n%s", strings.Join(d, "\n"))
	}
	for _, a := range after.Addrs {
		if !a.linkLocal6() {
			t.Errorf("address %s left on the NIC", a)
		}
	}
	if len(movableRoutes(after.Routes)) > 0 {
		t.Errorf("routes left on the NIC: %v", movableRoutes(after.Routes))
	}
}

// TestSwitchOverFailsHalfway forces a failure after every step in turn;
// each must roll back to a host identical to the snapshot taken before.
func TestSwitchOverFailsHalfway(t *testing.T) {
	l := newLab(t)
	before := l.settled(t)
	plan, err := PlanSwitch(before, l.options(t))
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= len(plan.Steps); n++ {
		o := l.options(t)
		o.FailAfterStep = n
		_, err := SwitchOver(context.Background(), o)
		mustContain(t, err, "FailAfterStep", "rolled back to the original configuration")
		if strings.Contains(err.Error(), "INCOMPLETE") {
			t.Fatalf("after step %d: %v", n, err)
		}
		l.requireSame(t, before, "rollback after step "+plan.Steps[n-1].String())
		if _, ok, _ := ReadRecord(l.stateDir); ok {
			t.Fatalf("record left after a complete rollback (step %d)", n)
		}
	}
	l.pingsOK(t)
}

// TestSwitchOverGatewaySilent: the gateway does not answer, or (no
// gateway) the probe address does not: both roll back.
func TestSwitchOverGatewaySilent(t *testing.T) {
	l := newLab(t)
	before := l.settled(t)
	kerneltest.Run(t, "ip", "-n", l.plain, "addr", "del", "10.77.0.1/24", "dev", "lan0")
	o := l.options(t)
	o.VerifyTimeout = time.Second
	start := time.Now()
	_, err := SwitchOver(context.Background(), o)
	mustContain(t, err, "default gateway 10.77.0.1 did not answer ARP", "rolled back to the original configuration")
	t.Logf("gateway silent: rolled back after %s: %v", time.Since(start), err)
	l.requireSame(t, before, "rollback after a silent gateway")

	// No default gateway, a probe address nobody holds.
	kerneltest.Run(t, "ip", "-n", l.host, "route", "del", "default", "via", labRouterIP, "dev", "eth0")
	before = l.settled(t)
	o.ProbeAddr = netip.MustParseAddr("10.77.0.200")
	_, err = SwitchOver(context.Background(), o)
	mustContain(t, err, "probe address 10.77.0.200 did not answer ARP", "rolled back")
	l.requireSame(t, before, "rollback after a silent probe address")

	// The same with a probe address that answers: it goes through.
	kerneltest.Run(t, "ip", "-n", l.plain, "addr", "add", "10.77.0.1/24", "dev", "lan0")
	o.ProbeAddr = netip.MustParseAddr(labRouterIP)
	res, err := SwitchOver(context.Background(), o)
	if err != nil || res.Checked != o.ProbeAddr {
		t.Fatalf("switch-over with an answering probe address: %+v, %v", res, err)
	}
	if err := Restore(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	l.requireSame(t, before, "restore")
}

// TestSwitchOverBadInput: clear errors and an untouched host.
func TestSwitchOverBadInput(t *testing.T) {
	l := newLab(t)
	kerneltest.Run(t, "ip", "-n", l.host, "tuntap", "add", "dev", "tap9", "mode", "tap")
	before := l.settled(t)
	cases := []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"missing NIC", func(o *Options) { o.Iface = "nosuch0" }, "interface nosuch0 not found"},
		{"not ethernet", func(o *Options) { o.Iface = "tap9" }, "tap9 is a tuntap interface"},
		{"range outside the subnet", func(o *Options) { o.Range = netip.MustParsePrefix("10.78.0.0/24") }, "flat range 10.78.0.0/24 is outside eth0's subnet (10.77.0.0/24)"},
		{"range over the host address", func(o *Options) { o.Range = netip.MustParsePrefix("10.77.0.8/29") }, "contains the host's own address 10.77.0.10"},
		{"no state dir", func(o *Options) { o.StateDir = "" }, "needs a state directory"},
	}
	for _, c := range cases {
		o := l.options(t)
		c.mod(&o)
		_, err := SwitchOver(context.Background(), o)
		mustContain(t, err, c.want)
		t.Logf("%s: %v", c.name, err)
		if d := Diff(before, l.settled(t)); len(d) > 0 {
			t.Fatalf("%s: host changed:\n%s", c.name, strings.Join(d, "\n"))
		}
		if _, ok, _ := ReadRecord(l.stateDir); ok {
			t.Fatalf("%s: a record was written", c.name)
		}
	}

	// A DHCP-style address with a finite lifetime.
	kerneltest.Run(t, "ip", "-n", l.host, "addr", "add", "10.77.0.20/24", "dev", "eth0", "valid_lft", "300", "preferred_lft", "300")
	before = l.settled(t)
	_, err := SwitchOver(context.Background(), l.options(t))
	mustContain(t, err, "address 10.77.0.20/24 on eth0 is dynamic (valid_lft", "make the address static")
	t.Logf("dynamic address: %v", err)
	if d := Diff(before, l.settled(t)); len(d) > 0 {
		t.Fatalf("dynamic address: host changed:\n%s", strings.Join(d, "\n"))
	}
}

// TestSwitchOverRecoversInterruptedRun: a record and a bridge left by a run
// that died between creating the bridge and enslaving the NIC are restored
// before a new switch-over.
func TestSwitchOverRecoversInterruptedRun(t *testing.T) {
	l := newLab(t)
	before := l.settled(t)
	o := l.options(t)
	o.FailAfterStep = 2
	// Simulate the crash: apply two steps with the record written, no rollback.
	c, err := openConn(l.hostNS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	plan, err := PlanSwitch(before, o)
	if err != nil {
		t.Fatal(err)
	}
	rec := Record{Version: recordVersion, Iface: "eth0", Bridge: o.Bridge, Original: before}
	if err := writeRecord(l.stateDir, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := c.applySwitch(context.Background(), plan, &rec, o); err == nil {
		t.Fatal("test hook did not fire")
	}
	o.FailAfterStep = 0
	res, err := SwitchOver(context.Background(), o)
	if err != nil || res.Adopted {
		t.Fatalf("switch-over after an interrupted run: %+v, %v", res, err)
	}
	checkSwitched(t, before, l.settled(t), o.Bridge)
	if err := Restore(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	l.requireSame(t, before, "restore")
}

// TestApplyAllBestEffort: a failing step does not stop the ones after it,
// and the error names the step (what a rollback relies on).
func TestApplyAllBestEffort(t *testing.T) {
	kerneltest.RequireRoot(t)
	ns := kerneltest.Netns(t, "fmfa")
	kerneltest.Veth(t, ns, "eth0", ns, "eth1")
	c, err := openConn(kerneltest.NetnsPath(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.applyAll(Plan{Steps: []Step{
		{Kind: StepSetMaster, Link: "eth0", Master: "nosuchbr"},
		{Kind: StepSetMTU, Link: "eth0", MTU: 1400},
		{Kind: StepAddrDel, Link: "eth0", Addr: Addr{Prefix: netip.MustParsePrefix("10.1.2.3/24")}}, // absent: fine
		{Kind: StepDeleteLink, Link: "nosuch1"},                                                     // absent: fine
	}})
	mustContain(t, err, "step 1 (enslave eth0 to nosuchbr)")
	if strings.Contains(err.Error(), "step 3") || strings.Contains(err.Error(), "step 4") {
		t.Errorf("deleting absent objects counted as failures: %v", err)
	}
	s, err := TakeSnapshot(kerneltest.NetnsPath(ns), "eth0", "")
	if err != nil {
		t.Fatal(err)
	}
	if s.NIC.MTU != 1400 {
		t.Errorf("step after the failed one not applied: mtu %d", s.NIC.MTU)
	}
}
