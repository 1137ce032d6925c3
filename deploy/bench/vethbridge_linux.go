package main

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

// What a veth+bridge container path costs next to macvlan on this kernel,
// measured beside paths (d) and (m) on the same switch (the second NICs'):
//
//	(w) hand-built veth+bridge in a bare "host" namespace per host
//	    (a third NIC on the switch, a bridge, a veth into a container
//	    namespace; net.bridge.bridge-nf-call-iptables=0, no rules): the
//	    ceiling of any veth+bridge design, (w)/(m) its cost against macvlan;
//	(v) the same built inside the lab host's own namespace, where dockerd
//	    turned bridge-nf-call-iptables on and Docker's and flatmesh's
//	    iptables chains live: (v)/(w) is what br_netfilter and those chains
//	    cost bridged frames; (d)/(v) what flatmesh adds on top.

// vethBridgeAddr is host's container address on path k ('v' or 'w').
func vethBridgeAddr(k byte, host int) netip.Addr {
	third := byte(79)
	if k == 'v' {
		third = 80
	}
	return netip.AddrFrom4([4]byte{192, 168, third, byte(10 + host)})
}

// vethBridgePaths builds (w) and (v) on lab l's hosts h1 and h2, with their
// uplinks on the switch in namespace sw (bridge br0).
func (e *env) vethBridgePaths(ctx context.Context, l *lab.Lab, sw string) ([]benchPath, error) {
	var ctrW, ctrV [3]string
	for i, name := range []string{"h1", "h2"} {
		h, err := l.Host(name)
		if err != nil {
			return nil, err
		}
		bare := nsDockerCtr + "-hbw-" + name
		if err := e.createNetns(ctx, bare); err != nil {
			return nil, err
		}
		if _, err := nsExec(ctx, bare, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"); err != nil {
			return nil, err
		}
		if ctrW[i+1], err = e.handBridge(ctx, sw, "hw"+name, bare, vethBridgeAddr('w', i+1)); err != nil {
			return nil, err
		}
		if ctrV[i+1], err = e.handBridge(ctx, sw, "hv"+name, h.Netns, vethBridgeAddr('v', i+1)); err != nil {
			return nil, err
		}
		// dockerd's FORWARD policy is DROP: let the hand-built bridge's
		// frames through after every Docker and flatmesh chain.
		if _, err := nsExec(ctx, h.Netns, "iptables", "-w", "-A", "FORWARD", "-i", "hb0", "-o", "hb0", "-j", "ACCEPT"); err != nil {
			return nil, err
		}
	}
	return []benchPath{
		{Key: "w", Name: "veth-bridge-bare", Label: "hand-built veth+bridge, bare ns", Client: ctrW[1], Server: ctrW[2], Addr: vethBridgeAddr('w', 2)},
		{Key: "v", Name: "veth-bridge-dockerhost", Label: "hand-built veth+bridge, Docker host ns", Client: ctrV[1], Server: ctrV[2], Addr: vethBridgeAddr('v', 2)},
	}, nil
}

// handBridge gives namespace hostNS an uplink (eth "hb-up") on switch sw
// (port swPort), a bridge hb0 over it and a container namespace on a veth
// into hb0 with address a; it returns the container namespace.
func (e *env) handBridge(ctx context.Context, sw, swPort, hostNS string, a netip.Addr) (string, error) {
	ctr := nsDockerCtr + "-c" + swPort
	if err := e.createNetns(ctx, ctr); err != nil {
		return "", err
	}
	err := steps(ctx,
		[]string{sw, "link", "add", swPort, "type", "veth", "peer", "name", "hb-up", "netns", hostNS},
		[]string{sw, "link", "set", swPort, "master", "br0"},
		[]string{sw, "link", "set", swPort, "up"},
		[]string{hostNS, "link", "add", "hb0", "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		[]string{hostNS, "link", "set", "hb-up", "master", "hb0"},
		[]string{hostNS, "link", "set", "hb-up", "up"},
		[]string{hostNS, "link", "set", "hb0", "up"},
		[]string{hostNS, "link", "add", "hb-ctr", "type", "veth", "peer", "name", "eth0", "netns", ctr},
		[]string{hostNS, "link", "set", "hb-ctr", "master", "hb0"},
		[]string{hostNS, "link", "set", "hb-ctr", "up"},
		[]string{ctr, "addr", "add", a.String() + "/24", "dev", "eth0"},
		[]string{ctr, "link", "set", "eth0", "up"},
	)
	if err != nil {
		return "", fmt.Errorf("hand-built veth+bridge in %s: %w", hostNS, err)
	}
	return ctr, nil
}

// vethBridgeSetup describes paths (w) and (v) for the suite's setup lines.
func vethBridgeSetup() string {
	return "(w) hand-built veth+bridge over a third NIC on the 2nd NICs' switch, in a bare namespace per host " +
		"(bridge-nf-call-iptables=0, no rules): the veth+bridge ceiling; (v) the same inside the lab host's namespace " +
		"(dockerd's bridge-nf-call-iptables=1, Docker's and flatmesh's chains, an ACCEPT for it at FORWARD's end); " +
		"(e) the lab's attached containers c11 (h1) -> c21 (h2), flat mode, same lab as (d)"
}
