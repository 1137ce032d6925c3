package firewall

import (
	"errors"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// conntrackHas reports whether the namespace's connection table holds an
// entry with src and dst (read from /proc/net/nf_conntrack inside it).
func conntrackHas(t *testing.T, ns, src, dst string) bool {
	t.Helper()
	out := kerneltest.NsRun(t, ns, "cat", "/proc/net/nf_conntrack")
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "src="+src+" dst="+dst+" ") {
			return true
		}
	}
	return false
}

// notrackPackets sums the packet counters of the raw chains' rules.
func notrackPackets(t *testing.T, ns string) int {
	t.Helper()
	n := 0
	for _, l := range strings.Split(kerneltest.NsRun(t, ns, "iptables-save", "-c", "-t", "raw"), "\n") {
		if strings.HasPrefix(l, "[") && strings.Contains(l, "-A FLATMESH-NOTRACK") {
			c, _, _ := strings.Cut(l[1:], ":")
			v, _ := strconv.Atoi(c)
			n += v
		}
	}
	return n
}

// TestFmwNoTrackOverDockerDrop: with Docker's FORWARD DROP and br_netfilter,
// cluster-internal traffic (container to container on the bridge, host to
// container) flows untracked and still passes; traffic leaving the cluster
// is still tracked and masqueraded; RemoveNoTrack takes the chains away.
func TestFmwNoTrackOverDockerDrop(t *testing.T) {
	if _, err := os.Stat("/proc/net/nf_conntrack"); err != nil {
		t.Skip("no /proc/net/nf_conntrack (nf_conntrack not loaded): cannot observe the connection table")
	}
	l := newLab(t)
	l.dockerize(t)
	o := l.opts(true)
	if err := Ensure(o); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if err := EnsureNoTrack(o, 4789); err != nil {
		t.Fatalf("EnsureNoTrack: %v", err)
	}
	if p, err := CheckNoTrack(o, 4789); err != nil || len(p) != 0 {
		t.Fatalf("CheckNoTrack after EnsureNoTrack = %q, %v", p, err)
	}
	before := iptablesSave(t, l.router, "iptables-save")
	if err := EnsureNoTrack(o, 4789); err != nil {
		t.Fatalf("second EnsureNoTrack: %v", err)
	}
	if after := iptablesSave(t, l.router, "iptables-save"); after != before {
		t.Fatalf("second EnsureNoTrack changed the tables:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Container to container over the bridge (through FORWARD when
	// br_netfilter is on), TCP both ways.
	if !canPing(l.c1, c2Addr) {
		t.Fatal("bridged container traffic dropped with notrack")
	}
	c2Port, c2Peers := listen(t, l.c2)
	if got := sourceSeen(t, l.c1, c2Addr, c2Port, c2Peers); got.String() != c1Addr {
		t.Errorf("c2 saw %s, want %s", got, c1Addr)
	}
	// Host (the bridge's address) to container: OUTPUT and PREROUTING.
	if !canPing(l.router, c1Addr) {
		t.Fatal("host to container traffic dropped with notrack")
	}
	if notrackPackets(t, l.router) == 0 {
		t.Error("the notrack rules matched no packet")
	}
	if conntrackHas(t, l.router, c1Addr, c2Addr) || conntrackHas(t, l.router, "10.99.0.1", c1Addr) {
		t.Errorf("cluster-internal flows tracked:\n%s", kerneltest.NsRun(t, l.router, "cat", "/proc/net/nf_conntrack"))
	}
	// Leaving the cluster: tracked and masqueraded.
	outPort, outPeers := listen(t, l.outside)
	if got := sourceSeen(t, l.c1, worldAddr, outPort, outPeers); got.String() != routerUp {
		t.Errorf("world saw %s, want the masqueraded %s", got, routerUp)
	}
	if !conntrackHas(t, l.router, c1Addr, worldAddr) {
		t.Error("traffic leaving the cluster is not tracked")
	}

	for range 2 {
		if err := RemoveNoTrack(o); err != nil {
			t.Fatalf("RemoveNoTrack: %v", err)
		}
	}
	if raw := kerneltest.NsRun(t, l.router, "iptables-save", "-t", "raw"); strings.Contains(raw, "FLATMESH") {
		t.Fatalf("notrack chains left:\n%s", raw)
	}
	if p, err := Check(o); err != nil || len(p) != 0 {
		t.Errorf("forwarding chains disturbed by RemoveNoTrack: %q, %v", p, err)
	}
	if !canPing(l.c1, c2Addr) {
		t.Error("container traffic dropped after RemoveNoTrack")
	}
	if err := Remove(o); err != nil {
		t.Fatal(err)
	}
}

// TestFmwNoTrackTunnelLocal: with the local underlay address given, tunnel
// packets to it are untracked (matched by address, no route lookup), while
// other UDP to the host is still tracked.
func TestFmwNoTrackTunnelLocal(t *testing.T) {
	if _, err := os.Stat("/proc/net/nf_conntrack"); err != nil {
		t.Skip("no /proc/net/nf_conntrack (nf_conntrack not loaded): cannot observe the connection table")
	}
	l := newLab(t)
	o := l.opts(true)
	o.TunnelLocal = netip.MustParseAddr(routerUp)
	if err := errors.Join(Ensure(o), EnsureNoTrack(o, 4789)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = errors.Join(Remove(o), RemoveNoTrack(o)) })
	send := func(port string) {
		kerneltest.NsRun(t, l.outside, "bash", "-c", "echo x > /dev/udp/"+routerUp+"/"+port)
	}
	if raw := kerneltest.NsRun(t, l.router, "iptables-save", "-t", "raw"); !strings.Contains(raw, "-d "+routerUp+"/32 -p udp -m udp --dport 4789 -j CT --notrack") {
		t.Fatalf("no address-matched tunnel rule:\n%s", raw)
	}
	send("4789")
	send("4790")
	ct := kerneltest.NsRun(t, l.router, "cat", "/proc/net/nf_conntrack")
	if strings.Contains(ct, "dport=4789") {
		t.Errorf("tunnel packets to the local address tracked:\n%s", ct)
	}
	if !strings.Contains(ct, "dport=4790") {
		t.Errorf("other UDP to the host not tracked (is conntrack on?):\n%s", ct)
	}
}
