package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// TestRootWireGuardDirectRouting: 4 wireguard hosts on two subnets behind
// a router, agents with --direct-routing --wg-direct-cleartext. Same-subnet
// pairs route to each other's blocks via the peer's underlay address on
// eth0, with no WireGuard packet between them (the container packets are
// in clear on the LAN, which is what the operator allowed); cross-subnet
// pairs stay in the tunnel, no container address in clear on the wire;
// every pair is reachable, also under FORWARD DROP.
func TestRootWireGuardDirectRouting(t *testing.T) {
	kerneltest.RequireCommands(t, "tcpdump")
	l := upLab(t, lab.Options{Hosts: 4, Subnets: 2, ContainersPerHost: 1, Mode: lab.ModeWireGuard,
		ExtraAgentArgs: []string{"--direct-routing", "--wg-direct-cleartext"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hosts := l.Hosts()
	byHost := map[string]lab.Container{}
	for _, c := range l.Containers() {
		byHost[c.Host] = c
	}
	for _, h := range hosts {
		for _, p := range hosts {
			if p.Name == h.Name {
				continue
			}
			dst := byHost[p.Name].IP.Addr().String()
			want := "dev flatmesh.wg"
			if p.Subnet() == h.Subnet() {
				want = fmt.Sprintf("via %s dev eth0", p.Addr())
			}
			kerneltest.Eventually(t, 30*time.Second, fmt.Sprintf("%s: route to %s's container %s with %q", h.Name, p.Name, dst, want),
				func() bool { return strings.Contains(routeGet(h.Netns, dst), want) })
		}
		t.Logf("%s (subnet %d) proto 95 routes:\n%s", h.Name, h.Subnet(),
			kerneltest.NsRun(t, h.Netns, "ip", "-4", "route", "show", "proto", "95"))
	}
	meshOK := func(t *testing.T) {
		results := l.PingMesh(ctx)
		for _, r := range results {
			if !r.OK() {
				t.Errorf("%s -> %s (%s): %d/%d replies %s", r.From, r.To, r.Addr, r.Received, r.Sent, r.Err)
			}
		}
		t.Logf("%d pings", len(results))
	}
	t.Run("every pair reachable", meshOK)
	t.Run("every pair reachable under FORWARD DROP", func(t *testing.T) {
		for _, h := range hosts {
			kerneltest.NsRun(t, h.Netns, "iptables", "-P", "FORWARD", "DROP")
		}
		meshOK(t)
	})

	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	c1, c2, c3 := byHost[h1.Name], byHost[h2.Name], byHost[h3.Name]
	ping := func(from, to lab.Container) func() {
		return func() {
			kerneltest.NsRun(t, from.Netns, "ping", "-c", "5", "-i", "0.2", "-W", "2", to.IP.Addr().String())
		}
	}
	t.Run("same subnet: no WireGuard, plain packets", func(t *testing.T) {
		wg := fmt.Sprintf("udp port 51820 and host %s", h3.Addr())
		if n := countDuring(t, h1.Netns, wg, ping(c1, c3)); n != 0 {
			t.Errorf("%d WireGuard packets between %s and %s (same subnet)", n, h1.Name, h3.Name)
		}
		plain := fmt.Sprintf("icmp and host %s and host %s", c1.IP.Addr(), c3.IP.Addr())
		if n := countDuring(t, h1.Netns, plain, ping(c1, c3)); n < 10 {
			t.Errorf("saw %d plain ICMP packets of %s <-> %s on %s's eth0, want 10", n, c1.Name, c3.Name, h1.Name)
		}
	})
	t.Run("across the router: encrypted", func(t *testing.T) {
		wg := fmt.Sprintf("udp port 51820 and host %s", h2.Addr())
		if n := countDuring(t, h1.Netns, wg, ping(c1, c2)); n < 10 {
			t.Errorf("saw %d WireGuard packets between %s and %s across the router, want 10", n, h1.Name, h2.Name)
		}
		clear := fmt.Sprintf("host %s or host %s", c1.IP.Addr(), c2.IP.Addr())
		if n := countDuring(t, h1.Netns, clear, ping(c1, c2)); n != 0 {
			t.Errorf("%d packets with a container address in clear on %s's eth0 across the router", n, h1.Name)
		}
	})
}
