package firewall

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// lab is a router namespace with a bridge and two containers on it, and an
// uplink to an "outside" namespace that has two addresses: .2 stands for
// the world, .3 for another cluster host (in NoNAT).
type lab struct {
	router, c1, c2, outside string
	log                     hclog.Logger
}

const (
	labBridge   = "fmwbr"
	labCIDR     = "10.99.0.0/24"
	c1Addr      = "10.99.0.2"
	c2Addr      = "10.99.0.3"
	routerUp    = "192.0.2.1"
	worldAddr   = "192.0.2.2"
	clusterHost = "192.0.2.3"
)

func newLab(t *testing.T) lab {
	t.Helper()
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "iptables", "iptables-save", "iptables-restore", "ping")
	l := lab{
		router:  kerneltest.Netns(t, "fmwr"),
		c1:      kerneltest.Netns(t, "fmwc"),
		c2:      kerneltest.Netns(t, "fmwc"),
		outside: kerneltest.Netns(t, "fmwo"),
		log:     hclog.New(&hclog.LoggerOptions{Name: "fmw", Level: hclog.Debug, Output: testWriter{t}}),
	}
	r := l.router
	kerneltest.Run(t, "ip", "-n", r, "link", "add", labBridge, "type", "bridge")
	kerneltest.Run(t, "ip", "-n", r, "addr", "add", "10.99.0.1/24", "dev", labBridge)
	kerneltest.Run(t, "ip", "-n", r, "link", "set", labBridge, "up")
	for i, c := range []struct{ ns, addr string }{{l.c1, c1Addr}, {l.c2, c2Addr}} {
		host := []string{"fmwv1", "fmwv2"}[i]
		kerneltest.Veth(t, r, host, c.ns, "eth0")
		kerneltest.Run(t, "ip", "-n", r, "link", "set", host, "master", labBridge)
		kerneltest.Run(t, "ip", "-n", c.ns, "addr", "add", c.addr+"/24", "dev", "eth0")
		kerneltest.Run(t, "ip", "-n", c.ns, "route", "add", "default", "via", "10.99.0.1")
	}
	kerneltest.Veth(t, r, "fmwup", l.outside, "eth0")
	kerneltest.Run(t, "ip", "-n", r, "addr", "add", routerUp+"/24", "dev", "fmwup")
	kerneltest.Run(t, "ip", "-n", l.outside, "addr", "add", worldAddr+"/24", "dev", "eth0")
	kerneltest.Run(t, "ip", "-n", l.outside, "addr", "add", clusterHost+"/24", "dev", "eth0")
	// The outside can route back to containers, so un-NATed replies return.
	kerneltest.Run(t, "ip", "-n", l.outside, "route", "add", labCIDR, "via", routerUp)
	return l
}

// dockerize loads Docker's rules (FORWARD policy DROP) into the router and
// sends bridged frames through iptables, as Docker's hosts do.
func (l lab) dockerize(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("testdata/docker.save")
	if err != nil {
		t.Fatal(err)
	}
	kerneltest.Run(t, "sh", "-c", "ip netns exec "+l.router+" iptables-restore < testdata/docker.save")
	if !strings.Contains(string(b), ":FORWARD DROP") {
		t.Fatal("fixture lost its DROP policy")
	}
	if _, err := os.Stat("/proc/sys/net/bridge"); err == nil {
		kerneltest.NsRun(t, l.router, "sh", "-c", "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables")
	} else {
		t.Log("br_netfilter not loaded: bridged frames bypass iptables here")
	}
}

func (l lab) opts(masq bool) Options {
	return Options{
		NetnsPath:    kerneltest.NetnsPath(l.router),
		Bridge:       labBridge,
		Overlay:      "fmwvx", // absent device: rules name it anyway
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(labCIDR)},
		NoNAT:        []netip.Prefix{netip.MustParsePrefix(clusterHost + "/32")},
		Masquerade:   masq,
		Logger:       l.log,
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func canPing(ns, dst string) bool {
	_, err := kerneltest.NsOutput(ns, "ping", "-c1", "-W1", dst)
	return err == nil
}

// iptablesSave returns iptables-save -c without its timestamp comments.
func iptablesSave(t *testing.T, ns, prog string) string {
	t.Helper()
	var keep []string
	for _, l := range strings.Split(kerneltest.NsRun(t, ns, prog, "-c"), "\n") {
		if !strings.HasPrefix(l, "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// listen accepts TCP connections inside ns and reports each peer's address.
func listen(t *testing.T, ns string) (port int, peers <-chan netip.Addr) {
	t.Helper()
	var ln net.Listener
	err := kernel.InNetns(kerneltest.NetnsPath(ns), func() error {
		var err error
		ln, err = net.Listen("tcp4", "0.0.0.0:0")
		return err
	})
	if err != nil {
		t.Fatalf("listening in %s: %v", ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan netip.Addr, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, ch
}

// sourceSeen connects from ns to dst:port and returns the source address the
// listener saw.
func sourceSeen(t *testing.T, ns, dst string, port int, peers <-chan netip.Addr) netip.Addr {
	t.Helper()
	err := kernel.InNetns(kerneltest.NetnsPath(ns), func() error {
		c, err := net.DialTimeout("tcp4", net.JoinHostPort(dst, strconv.Itoa(port)), 3*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("connecting from %s to %s: %v", ns, dst, err)
	}
	select {
	case a := <-peers:
		return a
	case <-time.After(3 * time.Second):
		t.Fatalf("listener at %s saw no connection", dst)
		return netip.Addr{}
	}
}

func TestFmwForwardingOverDockerDrop(t *testing.T) {
	l := newLab(t)
	l.dockerize(t)
	kerneltest.NsRun(t, l.router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	if canPing(l.c1, worldAddr) {
		t.Fatal("routed container traffic passes before Ensure: the DROP policy is not in effect")
	}
	bridged := false
	if _, err := os.Stat("/proc/sys/net/bridge"); err == nil {
		bridged = true
		if canPing(l.c1, c2Addr) {
			t.Fatal("bridged container traffic passes before Ensure despite br_netfilter and DROP")
		}
	}
	dockerBefore := iptablesSave(t, l.router, "iptables-save")
	problems, err := Check(l.opts(true))
	if err != nil || len(problems) != 4 {
		t.Fatalf("Check before Ensure = %q, %v; want 4 problems (2 chains, 2 jumps)", problems, err)
	}
	// Ensure must turn forwarding on by itself.
	kerneltest.NsRun(t, l.router, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")

	start := time.Now()
	if err := Ensure(l.opts(true)); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	t.Logf("first Ensure took %s", time.Since(start))
	if v := strings.TrimSpace(kerneltest.NsRun(t, l.router, "cat", "/proc/sys/net/ipv4/ip_forward")); v != "1" {
		t.Fatalf("ip_forward = %s after Ensure", v)
	}
	if !canPing(l.c1, worldAddr) {
		t.Fatal("routed container traffic still dropped after Ensure")
	}
	if !canPing(l.c1, c2Addr) {
		t.Fatalf("bridged container traffic dropped after Ensure (br_netfilter: %v)", bridged)
	}
	if p, err := Check(l.opts(true)); err != nil || len(p) != 0 {
		t.Fatalf("Check after Ensure = %q, %v (the rules as written differ from iptables-save's form?)", p, err)
	}

	// Idempotent: a second Ensure writes nothing, counters included.
	before := iptablesSave(t, l.router, "iptables-save")
	start = time.Now()
	if err := Ensure(l.opts(true)); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	t.Logf("second Ensure (no change) took %s", time.Since(start))
	if after := iptablesSave(t, l.router, "iptables-save"); after != before {
		t.Fatalf("second Ensure changed iptables-save -c:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if !strings.Contains(before, "-A FORWARD -j DOCKER-USER") || !strings.Contains(before, "172.17.0.0/16 ! -o docker0 -j MASQUERADE") {
		t.Fatalf("Docker's rules were lost:\n%s", before)
	}

	// Docker restarts and puts its jump first: Check notices, Ensure fixes.
	kerneltest.NsRun(t, l.router, "iptables", "-I", "FORWARD", "1", "-j", "DOCKER-USER")
	p, err := Check(l.opts(true))
	if err != nil || len(p) != 1 || !strings.Contains(p[0], "not the first") {
		t.Fatalf("Check with a displaced jump = %q, %v", p, err)
	}
	if err := Ensure(l.opts(true)); err != nil {
		t.Fatalf("Ensure after displacement: %v", err)
	}
	fwd := kerneltest.NsRun(t, l.router, "iptables", "-S", "FORWARD")
	if lines := strings.Split(fwd, "\n"); !strings.HasSuffix(lines[1], "-j FLATMESH-FORWARD") ||
		strings.Count(fwd, "FLATMESH-FORWARD") != 1 {
		t.Fatalf("FORWARD after re-Ensure:\n%s", fwd)
	}
	kerneltest.NsRun(t, l.router, "iptables", "-D", "FORWARD", "-j", "DOCKER-USER") // back to Docker's own set

	// Remove leaves Docker's rules exactly as they were, and no FLATMESH.
	for range 2 {
		if err := Remove(l.opts(true)); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	after := iptablesSave(t, l.router, "iptables-save")
	if strings.Contains(after, "FLATMESH") {
		t.Fatalf("FLATMESH left after Remove:\n%s", after)
	}
	if stripCounters(after) != stripCounters(dockerBefore) {
		t.Fatalf("Remove did not restore Docker's rules:\nbefore:\n%s\nafter:\n%s", dockerBefore, after)
	}
	if canPing(l.c1, worldAddr) {
		t.Fatal("container traffic still passes after Remove")
	}
}

// stripCounters removes the [packets:bytes] counters of iptables-save -c.
func stripCounters(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "[") {
			_, l, _ = strings.Cut(l, "] ")
		}
		if i := strings.LastIndex(l, " ["); strings.HasPrefix(l, ":") && i > 0 {
			l = l[:i]
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func TestFmwMasquerade(t *testing.T) {
	l := newLab(t)
	l.dockerize(t)
	if err := Ensure(l.opts(true)); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	outPort, outPeers := listen(t, l.outside)
	c2Port, c2Peers := listen(t, l.c2)

	cases := []struct {
		name, from, dst string
		port            int
		peers           <-chan netip.Addr
		want            string
	}{
		{"outside the cluster: masqueraded", l.c1, worldAddr, outPort, outPeers, routerUp},
		{"cluster host (NoNAT): own address", l.c1, clusterHost, outPort, outPeers, c1Addr},
		{"container on the bridge: own address", l.c1, c2Addr, c2Port, c2Peers, c1Addr},
	}
	for _, c := range cases {
		if got := sourceSeen(t, c.from, c.dst, c.port, c.peers); got.String() != c.want {
			t.Errorf("%s: %s saw source %s, want %s", c.name, c.dst, got, c.want)
		}
	}

	// Masquerade off: even the world sees the container's address.
	if err := Ensure(l.opts(false)); err != nil {
		t.Fatalf("Ensure without masquerade: %v", err)
	}
	if got := sourceSeen(t, l.c1, worldAddr, outPort, outPeers); got.String() != c1Addr {
		t.Errorf("masquerade off: world saw %s, want %s", got, c1Addr)
	}
	if p, err := Check(l.opts(false)); err != nil || len(p) != 0 {
		t.Fatalf("Check = %q, %v", p, err)
	}

	// The agent names the cluster hosts as Members (the member set), not
	// NoNAT: still not NATed, and a member change needs no rule written.
	om := l.opts(true)
	om.NoNAT, om.TunnelPorts, om.Members = nil, []uint16{4789}, []netip.Addr{netip.MustParseAddr(clusterHost)}
	if err := EnsureAll(om, 4789); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = RemoveNoTrack(om) })
	if got := sourceSeen(t, l.c1, clusterHost, outPort, outPeers); got.String() != c1Addr {
		t.Errorf("member (set): cluster host saw %s, want %s", got, c1Addr)
	}
	var logged strings.Builder
	om.Logger = hclog.New(&hclog.LoggerOptions{Output: &logged, Level: hclog.Info})
	om.Members = []netip.Addr{netip.MustParseAddr(worldAddr)}
	if err := EnsureAll(om, 4789); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logged.String(), "firewall rules updated") {
		t.Errorf("a member change wrote rules:\n%s", logged.String())
	}
	if got := sourceSeen(t, l.c1, clusterHost, outPort, outPeers); got.String() != routerUp {
		t.Errorf("no longer a member: cluster host saw %s, want it masqueraded (%s)", got, routerUp)
	}
	if err := RemoveNoTrack(om); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(l.opts(false)); err != nil {
		t.Fatal(err)
	}

	// Another program's blanket MASQUERADE further down POSTROUTING does
	// not NAT cluster traffic: our chain ACCEPTs it first.
	kerneltest.NsRun(t, l.router, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "fmwup", "-j", "MASQUERADE")
	if got := sourceSeen(t, l.c1, worldAddr, outPort, outPeers); got.String() != routerUp {
		t.Fatalf("the blanket rule is not in effect: world saw %s", got)
	}
	if got := sourceSeen(t, l.c1, clusterHost, outPort, outPeers); got.String() != c1Addr {
		t.Errorf("blanket MASQUERADE present: cluster host saw %s, want %s", got, c1Addr)
	}
}

func TestFmwConcurrentEnsure(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "iptables-save", "iptables-restore")
	ns := kerneltest.Netns(t, "fmwk")
	o := Options{NetnsPath: kerneltest.NetnsPath(ns), Bridge: "fmwbr", Overlay: "fmwvx",
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.98.0.0/16")}, Masquerade: true}
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- Ensure(o) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("Ensure: %v", err)
		}
	}
	if p, err := Check(o); err != nil || len(p) != 0 {
		t.Fatalf("Check after concurrent Ensure = %q, %v", p, err)
	}
}

func TestFmwLegacyTablesReported(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "iptables-legacy", "iptables-save", "iptables-restore")
	ns := kerneltest.Netns(t, "fmwl")
	if out, err := kerneltest.NsOutput(ns, "iptables-legacy", "-P", "FORWARD", "DROP"); err != nil {
		t.Skipf("iptables-legacy unusable here: %v %s", err, out)
	}
	if _, err := kerneltest.NsOutput(ns, "iptables-save"); err != nil {
		t.Fatal(err)
	}
	o := Options{NetnsPath: kerneltest.NetnsPath(ns), Bridge: "fmwbr"}
	if err := Ensure(o); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	p, err := Check(o)
	if err != nil || len(p) != 1 || !strings.Contains(p[0], "iptables-legacy tables are present") {
		t.Fatalf("Check = %q, %v; want the legacy tables reported", p, err)
	}
}

func TestFmwIPv6(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "ip6tables-save", "ip6tables-restore")
	ns := kerneltest.Netns(t, "fmw6")
	o := Options{
		NetnsPath: kerneltest.NetnsPath(ns), Bridge: "fmwbr", IPv6: true, Masquerade: true,
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("fd42::/64"), netip.MustParsePrefix("10.42.0.0/16")},
		NoNAT:        []netip.Prefix{netip.MustParsePrefix("2001:db8::7/128")},
	}
	if err := Ensure(o); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if v := strings.TrimSpace(kerneltest.NsRun(t, ns, "cat", "/proc/sys/net/ipv6/conf/all/forwarding")); v != "1" {
		t.Fatalf("IPv6 forwarding = %s", v)
	}
	v6 := iptablesSave(t, ns, "ip6tables-save")
	if !strings.Contains(v6, "-s fd42::/64 -d 2001:db8::7/128 -j ACCEPT") || strings.Contains(v6, "10.42.") {
		t.Fatalf("ip6tables-save:\n%s", v6)
	}
	if p, err := Check(o); err != nil || len(p) != 0 {
		t.Fatalf("Check = %q, %v", p, err)
	}
	if err := Remove(Options{NetnsPath: o.NetnsPath}); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, prog := range []string{"iptables-save", "ip6tables-save"} {
		if s := iptablesSave(t, ns, prog); strings.Contains(s, "FLATMESH") {
			t.Fatalf("%s after Remove:\n%s", prog, s)
		}
	}
}

func TestFmwErrors(t *testing.T) {
	if err := Ensure(Options{NetnsPath: "/nonexistent/fmw"}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Ensure in a missing namespace: %v", err)
	}
	if err := Ensure(Options{Bridge: "br+"}); err == nil || !strings.Contains(err.Error(), "treats specially") {
		t.Fatalf("Ensure with a wildcard bridge: %v", err)
	}
	kerneltest.RequireRoot(t)
	ns := kerneltest.Netns(t, "fmwe")
	t.Setenv("PATH", "/nonexistent")
	err := Ensure(Options{NetnsPath: kerneltest.NetnsPath(ns)})
	if err == nil || !strings.Contains(err.Error(), "iptables-save not found (install the Debian package iptables)") {
		t.Fatalf("Ensure without iptables: %v", err)
	}
}
