package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// routeGet is `ip route get addr` in ns.
func routeGet(ns, addr string) string {
	out, _ := kerneltest.NsOutput(ns, "ip", "-4", "route", "get", addr)
	return strings.TrimSpace(out)
}

// countDuring captures with filter on ns's eth0 while fn runs and returns
// the number of packets seen.
func countDuring(t *testing.T, ns, filter string, fn func()) int {
	t.Helper()
	file := filepath.Join(t.TempDir(), "cap.pcap")
	stop := capture(t, ns, "eth0", file, filter)
	fn()
	stop()
	out, err := exec.Command("tcpdump", "-n", "-r", file).Output()
	if err != nil {
		t.Fatalf("reading the capture: %v", err)
	}
	return strings.Count(string(out), "\n")
}

// waitDirectRoutes waits until every host of a routed lab (one container
// per host) routes same-subnet peers' containers via the peer's underlay
// address on eth0 and the others through tunnel, logs each host's routes,
// and returns the containers by host.
func waitDirectRoutes(t *testing.T, l *lab.Lab, tunnel string) map[string]lab.Container {
	t.Helper()
	byHost := map[string]lab.Container{}
	for _, c := range l.Containers() {
		byHost[c.Host] = c
	}
	for _, h := range l.Hosts() {
		for _, p := range l.Hosts() {
			if p.Name == h.Name {
				continue
			}
			dst := byHost[p.Name].IP.Addr().String()
			want := "dev " + tunnel
			if p.Subnet() == h.Subnet() {
				want = fmt.Sprintf("via %s dev eth0", p.Addr())
			}
			kerneltest.Eventually(t, 30*time.Second, fmt.Sprintf("%s: route to %s's container %s with %q", h.Name, p.Name, dst, want),
				func() bool { return strings.Contains(routeGet(h.Netns, dst), want) })
		}
		t.Logf("%s (subnet %d) proto 95 routes:\n%s", h.Name, h.Subnet(),
			kerneltest.NsRun(t, h.Netns, "ip", "-4", "route", "show", "proto", "95"))
	}
	return byHost
}

// directMeshReachable: every container pings every other, then again with
// every host's FORWARD policy DROP (Docker's policy: only our interface
// accepts let forwarded packets through, untracked ones included, as they
// match no ESTABLISHED rule).
func directMeshReachable(t *testing.T, ctx context.Context, l *lab.Lab) {
	check := func(t *testing.T) {
		results := l.PingMesh(ctx)
		for _, r := range results {
			if !r.OK() {
				t.Errorf("%s -> %s (%s): %d/%d replies %s", r.From, r.To, r.Addr, r.Received, r.Sent, r.Err)
			}
		}
		t.Logf("%d pings", len(results))
	}
	t.Run("every pair reachable", check)
	t.Run("every pair reachable under FORWARD DROP", func(t *testing.T) {
		for _, h := range l.Hosts() {
			kerneltest.NsRun(t, h.Netns, "iptables", "-P", "FORWARD", "DROP")
		}
		check(t)
	})
}

// pingFn returns a func that pings to from from, 5 times 0.2 s apart.
func pingFn(t *testing.T, from, to lab.Container) func() {
	return func() {
		kerneltest.NsRun(t, from.Netns, "ping", "-c", "5", "-i", "0.2", "-W", "2", to.IP.Addr().String())
	}
}

// checkTunnelUse captures on h1's eth0 of a routed lab: pinging h3 (same
// subnet) sends no tunnel packet (tunnel: a tcpdump filter) but plain
// ICMP between the containers; pinging h2 (across the router) goes through
// the tunnel, with no container address in clear on the wire.
func checkTunnelUse(t *testing.T, l *lab.Lab, byHost map[string]lab.Container, tunnel, what string) {
	hosts := l.Hosts()
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	c1, c2, c3 := byHost[h1.Name], byHost[h2.Name], byHost[h3.Name]
	t.Run("same subnet: no "+what+", plain packets", func(t *testing.T) {
		f := fmt.Sprintf("%s and host %s", tunnel, h3.Addr())
		if n := countDuring(t, h1.Netns, f, pingFn(t, c1, c3)); n != 0 {
			t.Errorf("%d %s packets between %s and %s (same subnet)", n, what, h1.Name, h3.Name)
		}
		plain := fmt.Sprintf("icmp and host %s and host %s", c1.IP.Addr(), c3.IP.Addr())
		if n := countDuring(t, h1.Netns, plain, pingFn(t, c1, c3)); n < 10 {
			t.Errorf("saw %d plain ICMP packets of %s <-> %s on %s's eth0, want 10", n, c1.Name, c3.Name, h1.Name)
		}
	})
	t.Run("across the router: "+what, func(t *testing.T) {
		f := fmt.Sprintf("%s and host %s", tunnel, h2.Addr())
		if n := countDuring(t, h1.Netns, f, pingFn(t, c1, c2)); n < 10 {
			t.Errorf("saw %d %s packets between %s and %s across the router, want 10", n, what, h1.Name, h2.Name)
		}
		clear := fmt.Sprintf("host %s or host %s", c1.IP.Addr(), c2.IP.Addr())
		if n := countDuring(t, h1.Netns, clear, pingFn(t, c1, c2)); n != 0 {
			t.Errorf("%d packets with a container address in clear on %s's eth0 across the router", n, h1.Name)
		}
	})
}

// purgeLeavesNoRoutes runs `leave --purge` on h and checks that the agent
// exits 0 and no flatmesh route (protocol 95) is left, direct ones included.
func purgeLeavesNoRoutes(t *testing.T, l *lab.Lab, h lab.Host) {
	if out, err := cli(l, h.Name, "leave", "--purge"); err != nil {
		t.Fatalf("leave --purge: %s", out)
	}
	if code, err := l.WaitAgentExit(h.Name, 20*time.Second); err != nil || code != 0 {
		t.Fatalf("agent after leave --purge: exit %d, %v", code, err)
	}
	if routes := kerneltest.NsRun(t, h.Netns, "ip", "route", "show", "proto", "95"); strings.TrimSpace(routes) != "" {
		t.Errorf("flatmesh routes left after the purge:\n%s", routes)
	}
}

// TestRootDirectRouting: 4 hosts on two subnets behind a router, agents
// with --direct-routing. Same-subnet pairs route to each other's blocks via
// the peer's underlay address on eth0 with no VXLAN packet between them;
// cross-subnet pairs keep the tunnel; every pair is reachable.
func TestRootDirectRouting(t *testing.T) {
	kerneltest.RequireCommands(t, "tcpdump")
	l := upLab(t, lab.Options{Hosts: 4, Subnets: 2, ContainersPerHost: 1, ExtraAgentArgs: []string{"--direct-routing"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hosts := l.Hosts()
	byHost := waitDirectRoutes(t, l, "flatmesh.vx")
	directMeshReachable(t, ctx, l)

	h1, h3 := hosts[0], hosts[2]
	c1, c3 := byHost[h1.Name], byHost[h3.Name]
	checkTunnelUse(t, l, byHost, "udp port 4789", "VXLAN")
	t.Run("turned off on h1: the tunnel again, in place", func(t *testing.T) {
		if err := l.StopAgent(h1.Name, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := l.StartAgent(h1.Name, "--direct-routing=false"); err != nil {
			t.Fatal(err)
		}
		dst := c3.IP.Addr().String()
		kerneltest.Eventually(t, 30*time.Second, "h1 to route "+dst+" through flatmesh.vx", func() bool {
			return strings.Contains(routeGet(h1.Netns, dst), "dev flatmesh.vx")
		})
		if out := kerneltest.NsRun(t, h1.Netns, "ip", "route", "show", "proto", "95", "dev", "eth0"); strings.TrimSpace(out) != "" {
			t.Errorf("direct routes left on eth0:\n%s", out)
		}
		// h1 no longer gossips that it accepts direct routing (its firewall
		// drops unencapsulated cluster traffic again), so h3 moves its
		// routes to h1's blocks back to the tunnel too.
		kerneltest.Eventually(t, 30*time.Second, "h3 to route "+c1.IP.Addr().String()+" through flatmesh.vx", func() bool {
			return strings.Contains(routeGet(h3.Netns, c1.IP.Addr().String()), "dev flatmesh.vx")
		})
		kerneltest.NsRun(t, c1.Netns, "ping", "-c", "2", "-W", "2", dst)
		kerneltest.NsRun(t, c3.Netns, "ping", "-c", "2", "-W", "2", c1.IP.Addr().String())
	})
	t.Run("leave --purge removes the direct routes", func(t *testing.T) {
		purgeLeavesNoRoutes(t, l, h3)
		if rules := kerneltest.NsRun(t, h3.Netns, "iptables-save"); strings.Contains(rules, "FLATMESH") {
			t.Errorf("firewall chains left after the purge:\n%s", rules)
		}
	})
	t.Run("cluster traffic and tunnel packets untracked", func(t *testing.T) {
		ct, err := kerneltest.NsOutput(h1.Netns, "cat", "/proc/net/nf_conntrack")
		if err != nil {
			t.Skipf("no connection table to read: %v", err)
		}
		for _, line := range strings.Split(ct, "\n") {
			if strings.Contains(line, "dport=4789 ") || strings.Contains(line, "src="+c1.IP.Addr().String()+" ") {
				t.Errorf("tracked on %s: %s", h1.Name, line)
			}
		}
	})
}
