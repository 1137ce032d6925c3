package e2e

import (
	"context"
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
		purgeLeavesNoRoutes(t, l, l.Hosts()[2])
	})
}
