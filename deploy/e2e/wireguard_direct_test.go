package e2e

import (
	"context"
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
	byHost := waitDirectRoutes(t, l, "flatmesh.wg")
	directMeshReachable(t, ctx, l)
	checkTunnelUse(t, l, byHost, "udp port 51820", "WireGuard")
	t.Run("leave --purge removes the direct routes too", func(t *testing.T) {
		h3 := l.Hosts()[2]
		if out, err := cli(l, h3.Name, "leave", "--purge"); err != nil {
			t.Fatalf("leave --purge: %s", out)
		}
		if code, err := l.WaitAgentExit(h3.Name, 20*time.Second); err != nil || code != 0 {
			t.Fatalf("agent after leave --purge: exit %d, %v", code, err)
		}
		if routes := kerneltest.NsRun(t, h3.Netns, "ip", "route", "show", "proto", "95"); strings.TrimSpace(routes) != "" {
			t.Errorf("flatmesh routes left after the purge:\n%s", routes)
		}
	})
}
