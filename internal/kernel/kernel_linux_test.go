package kernel

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
	"github.com/mdlayher/arp"
	"golang.org/x/sys/unix"
)

const prefix = "fmk"

func openNS(t *testing.T, name string) *NS {
	t.Helper()
	ns, err := OpenNS(kerneltest.NetnsPath(name))
	if err != nil {
		t.Fatalf("opening %s: %v", name, err)
	}
	t.Cleanup(ns.Close)
	return ns
}

func TestRootResolveNetns(t *testing.T) {
	kerneltest.RequireRoot(t)
	name := kerneltest.Netns(t, prefix)
	for _, spec := range []string{name, kerneltest.NetnsPath(name)} {
		p, err := ResolveNetns(spec)
		if err != nil || p != kerneltest.NetnsPath(name) {
			t.Errorf("%q: %q %v", spec, p, err)
		}
	}
	pid := strconv.Itoa(os.Getpid())
	if p, err := ResolveNetns(pid); err != nil || p != "/proc/"+pid+"/ns/net" {
		t.Errorf("own pid: %q %v", p, err)
	}
	_, err := ResolveNetns("fmknosuchns")
	if err == nil || err.Error() != `network namespace "fmknosuchns" not found (looked at /run/netns/fmknosuchns)` {
		t.Errorf("missing name: %v", err)
	}
	if _, err := ResolveNetns("999999999"); err == nil || !strings.Contains(err.Error(), "no process with pid 999999999") {
		t.Errorf("missing pid: %v", err)
	}
	plain := filepath.Join(t.TempDir(), "notns")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ResolveNetns(plain); err == nil || !strings.Contains(err.Error(), "is not a namespace file") {
		t.Errorf("plain file: %v", err)
	}
	if _, err := ResolveNetns("/proc/self/ns/uts"); err == nil || !strings.Contains(err.Error(), "not a network namespace") {
		t.Errorf("uts namespace: %v", err)
	}
}

func TestRootEnsureBridge(t *testing.T) {
	kerneltest.RequireRoot(t)
	name := kerneltest.Netns(t, prefix)
	ns := openNS(t, name)
	mac := MAC{0x0e, 0xfc, 1, 2, 3, 4}
	spec := BridgeSpec{Name: "fmkbr0", MTU: 1450, MAC: mac.HardwareAddr()}
	link, changes, err := EnsureBridge(ns, spec)
	if err != nil || len(changes) == 0 {
		t.Fatalf("first ensure: %v %v", changes, err)
	}
	if link.Attrs().MTU != 1450 || link.Attrs().HardwareAddr.String() != mac.String() {
		t.Fatalf("bridge attrs: mtu %d mac %s", link.Attrs().MTU, link.Attrs().HardwareAddr)
	}
	if _, changes, err = EnsureBridge(ns, spec); err != nil || len(changes) != 0 {
		t.Fatalf("second ensure changed %v (%v)", changes, err)
	}
	kerneltest.Run(t, "ip", "-n", name, "link", "set", "fmkbr0", "type", "bridge", "stp_state", "1", "forward_delay", "1500")
	kerneltest.Run(t, "ip", "-n", name, "link", "set", "fmkbr0", "mtu", "1300", "down")
	if _, changes, err = EnsureBridge(ns, spec); err != nil || len(changes) != 3 {
		t.Fatalf("repair: %v %v", changes, err)
	}
	stp, fwd, err := BridgeSTP(ns, link.Attrs().Index)
	if err != nil || stp != 0 || fwd != 0 {
		t.Fatalf("stp %d forward delay %d (%v)", stp, fwd, err)
	}
	out := kerneltest.Run(t, "ip", "-n", name, "-d", "link", "show", "fmkbr0")
	for _, w := range []string{"mtu 1450", "state UP", "stp_state 0", "forward_delay 0"} {
		if !strings.Contains(out, w) && !(w == "state UP" && strings.Contains(out, "UP")) {
			t.Errorf("ip link lacks %q:\n%s", w, out)
		}
	}
	kerneltest.Run(t, "ip", "-n", name, "link", "add", "fmknotbr", "type", "veth", "peer", "name", "fmknotbrp")
	_, _, err = EnsureBridge(ns, BridgeSpec{Name: "fmknotbr"})
	if err == nil || !strings.Contains(err.Error(), "exists but is a veth, not a bridge") {
		t.Fatalf("foreign link: %v", err)
	}
}

func TestRootEnsureVXLAN(t *testing.T) {
	kerneltest.RequireRoot(t)
	name := kerneltest.Netns(t, prefix)
	ns := openNS(t, name)
	spec := VXLANSpec{Name: "fmkvx0", VNI: 4213, Port: 4789, Local: ip("198.18.0.1"), MTU: 1450, MAC: MAC{0x0e, 0xfd, 1, 1, 1, 1}.HardwareAddr()}
	if _, changes, err := EnsureVXLAN(ns, spec); err != nil || len(changes) == 0 {
		t.Fatalf("create: %v %v", changes, err)
	}
	if _, changes, err := EnsureVXLAN(ns, spec); err != nil || len(changes) != 0 {
		t.Fatalf("second ensure changed %v (%v)", changes, err)
	}
	spec.MTU = 1400
	if _, changes, err := EnsureVXLAN(ns, spec); err != nil || len(changes) != 1 || !strings.HasPrefix(changes[0], "mtu 1400") {
		t.Fatalf("mtu fix: %v %v", changes, err)
	}
	before, _ := ns.H.LinkByName("fmkvx0")
	spec.VNI = 77
	link, changes, err := EnsureVXLAN(ns, spec)
	if err != nil || !strings.Contains(strings.Join(changes, ";"), "removed vxlan fmkvx0 (vni 4213, want 77)") {
		t.Fatalf("recreate: %v %v", changes, err)
	}
	if link.Attrs().Index == before.Attrs().Index {
		t.Fatal("incompatible vxlan was not recreated")
	}
	out := kerneltest.Run(t, "ip", "-n", name, "-d", "link", "show", "fmkvx0")
	for _, w := range []string{"vxlan id 77", "local 198.18.0.1", "dstport 4789", "nolearning", "mtu 1400"} {
		if !strings.Contains(out, w) {
			t.Errorf("ip link lacks %q:\n%s", w, out)
		}
	}
}

// reconcileRig is a namespace with a bridge and a vxlan link and the scope
// a vxlan host uses.
func reconcileRig(t *testing.T) (string, *NS, State, Scope) {
	t.Helper()
	name := kerneltest.Netns(t, prefix)
	ns := openNS(t, name)
	if _, _, err := EnsureBridge(ns, BridgeSpec{Name: "fmkbr", MTU: 1450}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureVXLAN(ns, VXLANSpec{Name: "fmkvx", VNI: 4213, Port: 4789, Local: ip("198.18.0.1"), MTU: 1450}); err != nil {
		t.Fatal(err)
	}
	want := State{
		Addrs:  []Addr{{Dev: "fmkbr", Prefix: pfx("10.213.0.1/26")}, {Dev: "fmkbr", Prefix: pfx("fd13::1/64")}},
		Neighs: []Neigh{{Dev: "fmkvx", IP: ip("10.213.0.65"), MAC: macA}, {Dev: "fmkvx", IP: ip("10.213.0.129"), MAC: macB}},
		FDB:    []FDB{{Dev: "fmkvx", MAC: macA, Dst: ip("198.18.0.2")}, {Dev: "fmkvx", MAC: macB, Dst: ip("198.18.0.3")}},
		Routes: []Route{
			{Dst: pfx("10.213.0.64/26"), Gw: ip("10.213.0.65"), Dev: "fmkvx", Src: ip("10.213.0.1"), OnLink: true},
			{Dst: pfx("10.213.0.128/26"), Gw: ip("10.213.0.129"), Dev: "fmkvx", Src: ip("10.213.0.1"), OnLink: true, MTU: 1400},
		},
	}
	scope := Scope{AddrLinks: []string{"fmkbr"}, NeighLinks: []string{"fmkvx"}, FDBLinks: []string{"fmkvx"}, RouteLinks: []string{"fmkvx", "fmkbr"}}
	return name, ns, want, scope
}

func TestRootReconcileTwiceIsEmpty(t *testing.T) {
	kerneltest.RequireRoot(t)
	name, ns, want, scope := reconcileRig(t)
	plan, err := Reconcile(ns, want, scope)
	if err != nil {
		t.Fatalf("first reconcile: %v", err)
	}
	if plan.Add.Len() != want.Len() {
		t.Fatalf("first plan %s, want %d adds", plan, want.Len())
	}
	if plan, err = Reconcile(ns, want, scope); err != nil || !plan.Empty() {
		t.Fatalf("second reconcile planned %s (%+v), err %v", plan, plan, err)
	}
	routes := kerneltest.Run(t, "ip", "-n", name, "route", "show", "proto", "95")
	if !strings.Contains(routes, "10.213.0.128/26 via 10.213.0.129 dev fmkvx src 10.213.0.1 onlink mtu 1400") {
		t.Fatalf("routes:\n%s", routes)
	}
	// Hand edits: a route deleted, a foreign neighbour added, an fdb entry
	// pointed elsewhere, a foreign route on an owned link with another proto.
	kerneltest.Run(t, "ip", "-n", name, "route", "del", "10.213.0.64/26")
	kerneltest.Run(t, "ip", "-n", name, "neigh", "add", "10.213.0.200", "lladdr", "0e:00:00:00:00:09", "dev", "fmkvx", "nud", "permanent")
	kerneltest.Run(t, "bridge", "-n", name, "fdb", "replace", macB.String(), "dev", "fmkvx", "dst", "198.18.0.99", "self", "permanent")
	kerneltest.Run(t, "ip", "-n", name, "route", "add", "10.99.0.0/24", "dev", "fmkbr", "proto", "static")
	plan, err = Reconcile(ns, want, scope)
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	if got := plan.String(); got != "add 1 route, replace 1 fdb, del 1 neigh" {
		t.Fatalf("repair plan = %q", got)
	}
	if plan, err = Reconcile(ns, want, scope); err != nil || !plan.Empty() {
		t.Fatalf("after repair: %s %v", plan, err)
	}
	if out := kerneltest.Run(t, "ip", "-n", name, "route", "show", "10.99.0.0/24"); !strings.Contains(out, "proto static") {
		t.Fatalf("foreign route touched: %q", out)
	}
	// Withdraw everything: only our objects go.
	if plan, err = Reconcile(ns, State{}, scope); err != nil || plan.Del.Len() != want.Len() {
		t.Fatalf("withdraw: %s %v", plan, err)
	}
	have, err := Observe(ns, scope)
	if err != nil || have.Len() != 0 {
		t.Fatalf("after withdraw observed %+v (%v)", have, err)
	}
}

func TestRootReconcileRouteConflict(t *testing.T) {
	kerneltest.RequireRoot(t)
	name, ns, want, scope := reconcileRig(t)
	kerneltest.Run(t, "ip", "-n", name, "link", "add", "fmkother", "type", "veth", "peer", "name", "fmkotherp")
	kerneltest.Run(t, "ip", "-n", name, "link", "set", "fmkother", "up")
	kerneltest.Run(t, "ip", "-n", name, "route", "add", "10.213.0.64/26", "dev", "fmkother")
	_, err := Reconcile(ns, want, scope)
	if err == nil || !strings.Contains(err.Error(), "does not own; leaving it alone") {
		t.Fatalf("conflict: %v", err)
	}
	if out := kerneltest.Run(t, "ip", "-n", name, "route", "show", "10.213.0.64/26"); !strings.Contains(out, "dev fmkother") {
		t.Fatalf("foreign route replaced: %q", out)
	}
	if out := kerneltest.Run(t, "ip", "-n", name, "route", "show", "10.213.0.128/26"); !strings.Contains(out, "dev fmkvx") {
		t.Fatalf("other routes not applied after the conflict: %q", out)
	}
}

func TestRootCreateVethRollback(t *testing.T) {
	kerneltest.RequireRoot(t)
	hostName, cName := kerneltest.Netns(t, prefix), kerneltest.Netns(t, prefix)
	host, ctr := openNS(t, hostName), openNS(t, cName)
	kerneltest.Run(t, "ip", "-n", cName, "link", "add", "eth0", "type", "veth", "peer", "name", "fmkx")
	_, _, err := CreateVeth(host, VethSpec{Name: "fmkh0", PeerName: "eth0", PeerNS: ctr, MTU: 1400})
	if err == nil || !errors.Is(err, unix.EEXIST) {
		t.Fatalf("name clash: %v", err)
	}
	if _, err := host.H.LinkByName("fmkh0"); err == nil {
		t.Fatal("stray host veth left behind")
	}
	h, p, err := CreateVeth(host, VethSpec{Name: "fmkh0", PeerName: "eth1", PeerNS: ctr, MTU: 1400, Alias: "flatmesh:x:eth1"})
	if err != nil {
		t.Fatal(err)
	}
	if h.Attrs().MTU != 1400 || p.Attrs().MTU != 1400 || h.Attrs().Alias != "flatmesh:x:eth1" {
		t.Fatalf("attrs: %+v / %+v", h.Attrs(), p.Attrs())
	}
}

func TestRootSysctl(t *testing.T) {
	kerneltest.RequireRoot(t)
	ns := openNS(t, kerneltest.Netns(t, prefix))
	hostBefore, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1", "0", "1"} {
		if err := ns.SetSysctl("net.ipv4.ip_forward", v); err != nil {
			t.Fatal(err)
		}
		if got, err := ns.Sysctl("net/ipv4/ip_forward"); err != nil || got != v {
			t.Fatalf("read back %q %v, want %q", got, err, v)
		}
	}
	hostAfter, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if string(hostBefore) != string(hostAfter) {
		t.Fatalf("host ip_forward changed from %q to %q", hostBefore, hostAfter)
	}
	if err := ns.SetSysctl("../etc/passwd", "x"); err == nil {
		t.Fatal("path escape accepted")
	}
}

func TestRootWatchWakesOnHandDelete(t *testing.T) {
	kerneltest.RequireRoot(t)
	name, ns, want, scope := reconcileRig(t)
	if _, err := Reconcile(ns, want, scope); err != nil {
		t.Fatal(err)
	}
	wake := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, WatchOptions{Netns: ns.Path, Links: []string{"fmkvx", "fmkbr"}, NeighLinks: []string{"fmkvx"}, Wake: wake})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	})
	waitWake(t, wake, "initial poke")
	kerneltest.Run(t, "ip", "-n", name, "route", "del", "10.213.0.64/26")
	waitWake(t, wake, "route deleted by hand")
	kerneltest.Run(t, "ip", "-n", name, "neigh", "del", "10.213.0.65", "dev", "fmkvx")
	waitWake(t, wake, "neighbour deleted by hand")
	plan, err := Reconcile(ns, want, scope)
	if err != nil || plan.String() != "add 1 neigh, add 1 route" {
		t.Fatalf("repair after wake: %s %v", plan, err)
	}
}

func waitWake(t *testing.T, wake <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-wake:
	case <-time.After(3 * time.Second):
		t.Fatalf("no wake-up for %s", what)
	}
}

func TestRootGratuitousARP(t *testing.T) {
	kerneltest.RequireRoot(t)
	a, b := kerneltest.Netns(t, prefix), kerneltest.Netns(t, prefix)
	kerneltest.Veth(t, a, "fmka", b, "fmkb")
	l, err := ListenARP(kerneltest.NetnsPath(b), "fmkb")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := ip("10.213.0.5")
	if err := SendGratuitousARP(kerneltest.NetnsPath(a), "fmka", addr); err != nil {
		t.Fatal(err)
	}
	got, err := l.Read(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nsA := openNS(t, a)
	link, _ := nsA.H.LinkByName("fmka")
	if got.Operation != arp.OperationRequest || got.SenderIP != addr || got.TargetIP != addr || got.SenderHardwareAddr.String() != link.Attrs().HardwareAddr.String() {
		t.Fatalf("got %+v", got)
	}
	if err := SendGratuitousARP(kerneltest.NetnsPath(a), "fmka", netip.MustParseAddr("fd00::5")); err == nil {
		t.Fatal("IPv6 gratuitous arp accepted")
	}
}

func TestRootTxChecksum(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "ethtool")
	name := kerneltest.Netns(t, prefix)
	ns := openNS(t, name)
	if _, _, err := EnsureVXLAN(ns, VXLANSpec{Name: "fmkvx", VNI: 1, Port: 4789}); err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{false, true, false} {
		if err := ns.SetTxChecksum("fmkvx", on); err != nil {
			t.Fatal(err)
		}
		got, err := ns.TxChecksum("fmkvx")
		if err != nil || got != on {
			t.Fatalf("read back %t %v, want %t", got, err, on)
		}
		want := "tx-checksumming: off"
		if on {
			want = "tx-checksumming: on"
		}
		if out := kerneltest.NsRun(t, name, "ethtool", "-k", "fmkvx"); !strings.Contains(out, want) {
			t.Fatalf("ethtool -k lacks %q:\n%s", want, out)
		}
	}
	if _, err := ns.TxChecksum("fmknosuch"); err == nil {
		t.Fatal("missing link accepted")
	}
}
