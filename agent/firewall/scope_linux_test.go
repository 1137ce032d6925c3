package firewall

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

func sysctlIn(t *testing.T, ns, key string) string {
	t.Helper()
	return strings.TrimSpace(kerneltest.NsRun(t, ns, "cat", "/proc/sys/"+key))
}

// TestFmwFlatForwardsOnlyBridgedContainers: a flat host's bridge is the
// LAN. A LAN machine that routes through the host must not reach an
// unpublished container on a Docker bridge (Docker's DROP must still
// decide), while the LAN reaches our flat container through the bridge;
// ip_forward is left as it was.
func TestFmwFlatForwardsOnlyBridgedContainers(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "iptables", "iptables-save", "iptables-restore", "ping")
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		t.Skip("skipping: br_netfilter is not loaded, bridged frames bypass iptables here")
	}
	host, lan, flatC, dockC := kerneltest.Netns(t, "fmwf"), kerneltest.Netns(t, "fmwl"), kerneltest.Netns(t, "fmwc"), kerneltest.Netns(t, "fmwd")
	// The LAN bridge holds the host's LAN address; its ports: the LAN
	// machine and a flat container (10.98.0.70, inside the flat range).
	kerneltest.Run(t, "ip", "-n", host, "link", "add", "fmwlan", "type", "bridge")
	kerneltest.Run(t, "ip", "-n", host, "addr", "add", "10.98.0.1/24", "dev", "fmwlan")
	kerneltest.Run(t, "ip", "-n", host, "link", "set", "fmwlan", "up")
	for _, p := range []struct{ port, ns, addr string }{{"fmwp1", lan, "10.98.0.50/24"}, {"fmwp2", flatC, "10.98.0.70/24"}} {
		kerneltest.Veth(t, host, p.port, p.ns, "eth0")
		kerneltest.Run(t, "ip", "-n", host, "link", "set", p.port, "master", "fmwlan")
		kerneltest.Run(t, "ip", "-n", p.ns, "addr", "add", p.addr, "dev", "eth0")
	}
	// The LAN machine routes Docker's network through the flat host.
	kerneltest.Run(t, "ip", "-n", lan, "route", "add", "172.17.0.0/16", "via", "10.98.0.1")
	// A Docker bridge with an unpublished container.
	kerneltest.Run(t, "ip", "-n", host, "link", "add", "docker0", "type", "bridge")
	kerneltest.Run(t, "ip", "-n", host, "addr", "add", "172.17.0.1/16", "dev", "docker0")
	kerneltest.Run(t, "ip", "-n", host, "link", "set", "docker0", "up")
	kerneltest.Veth(t, host, "fmwp3", dockC, "eth0")
	kerneltest.Run(t, "ip", "-n", host, "link", "set", "fmwp3", "master", "docker0")
	kerneltest.Run(t, "ip", "-n", dockC, "addr", "add", "172.17.0.2/16", "dev", "eth0")
	kerneltest.Run(t, "ip", "-n", dockC, "route", "add", "default", "via", "172.17.0.1")
	kerneltest.Run(t, "sh", "-c", "ip netns exec "+host+" iptables-restore < testdata/docker.save")
	kerneltest.NsRun(t, host, "sh", "-c", "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables")
	kerneltest.NsRun(t, host, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward") // Docker's doing

	o := Options{NetnsPath: kerneltest.NetnsPath(host), Bridge: "fmwlan", Flat: true,
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.98.0.64/26")}}
	if canPing(lan, "10.98.0.70") {
		t.Fatal("the flat container is reachable before Ensure: br_netfilter and DROP are not in effect")
	}
	if err := Ensure(o); err != nil {
		t.Fatal(err)
	}
	if !canPing(lan, "10.98.0.70") {
		t.Fatal("the LAN does not reach the flat container through the bridge")
	}
	if canPing(lan, "172.17.0.2") {
		t.Fatal("a LAN machine routing through the flat host reaches an unpublished Docker container")
	}
	if p, err := Check(o); err != nil || len(p) != 0 {
		t.Fatalf("Check = %q, %v", p, err)
	}
	// Flat mode leaves ip_forward alone, on or off.
	kerneltest.NsRun(t, host, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")
	if err := Ensure(o); err != nil {
		t.Fatal(err)
	}
	if v := sysctlIn(t, host, "net/ipv4/ip_forward"); v != "0" {
		t.Fatalf("flat mode set ip_forward to %s", v)
	}
}

// TestFmwTunnelPortOnlyFromMembers: UDP to the VXLAN port is accepted from
// a member's underlay address and dropped from any other; the member list
// follows changes; Remove restores the ip_forward it changed.
func TestFmwTunnelPortOnlyFromMembers(t *testing.T) {
	l := newLab(t)
	member, stranger := netip.MustParseAddr(clusterHost), netip.MustParseAddr(worldAddr)
	o := l.opts(true)
	o.TunnelPorts = []uint16{4789}
	o.Members = []netip.Addr{member}
	o.StateFile = filepath.Join(t.TempDir(), "firewall.json")
	kerneltest.NsRun(t, l.router, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")
	if err := Ensure(o); err != nil {
		t.Fatal(err)
	}
	p := newUDPProbe(t, l)
	if seen := p.arrivals(member, stranger); !seen[member] || seen[stranger] {
		t.Fatalf("to port 4789 arrived from %v; want the member %s only", seen, member)
	}
	// The stranger becomes a member, the old member leaves.
	o.Members = []netip.Addr{stranger}
	if err := Ensure(o); err != nil {
		t.Fatal(err)
	}
	if seen := p.arrivals(member, stranger); seen[member] || !seen[stranger] {
		t.Fatalf("after the member change, 4789 arrived from %v; want %s only", seen, stranger)
	}
	if v := sysctlIn(t, l.router, "net/ipv4/ip_forward"); v != "1" {
		t.Fatalf("ip_forward = %s after Ensure in vxlan mode", v)
	}
	if err := Remove(o); err != nil {
		t.Fatal(err)
	}
	if v := sysctlIn(t, l.router, "net/ipv4/ip_forward"); v != "0" {
		t.Fatalf("ip_forward = %s after Remove; Ensure found it 0", v)
	}
	if _, err := os.Stat(o.StateFile); !os.IsNotExist(err) {
		t.Fatalf("state file left after Remove: %v", err)
	}
	if out := iptablesSave(t, l.router, "iptables-save"); strings.Contains(out, "FLATMESH") {
		t.Fatalf("chains left after Remove:\n%s", out)
	}
}
