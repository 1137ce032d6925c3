package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

// Docker's own answer to containers on the hosts' LAN, as a peer of
// flatmesh flat mode: a second lab in flat mode with a dockerd per host,
// a flatmesh network (flat) and, on a second NIC of each host (eth1, a veth
// into a switch of its own, as the lab's eth0 is into the lab's), a
// macvlan network; one busybox container per host on each.

const (
	labDockerFlat = "fbdf"
	nsMacvlanSw   = nsDockerCtr + "-mv-sw" // the second NICs' switch
	macvlanNet    = "mv"
	macvlanSubnet = "192.168.78.0/24"
)

// macvlanAddr is the fixed address of host i's macvlan container (each
// dockerd's macvlan IPAM is its own: without --ip both would get .2).
func macvlanAddr(i int) string { return netip.AddrFrom4([4]byte{192, 168, 78, byte(10 + i)}).String() }

// flatPeerPaths builds path (d), Docker containers on a flatmesh network in
// flat mode, (m), Docker containers on macvlan over the second NIC, and the
// hand-built (w) and (v); it returns what the flat run timings need too.
func (e *env) flatPeerPaths(ctx context.Context) ([]benchPath, flatDocker, error) {
	var none flatDocker
	l, err := e.upLab(ctx, labDockerFlat, lab.ModeFlat, "--metrics-addr", dockerMetricsAddr)
	if err != nil {
		return nil, none, err
	}
	if err := e.createNetns(ctx, nsMacvlanSw); err != nil {
		return nil, none, err
	}
	if err := steps(ctx, []string{nsMacvlanSw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		[]string{nsMacvlanSw, "link", "set", "br0", "up"}); err != nil {
		return nil, none, err
	}
	ds := map[string]lab.Dockerd{}
	for _, name := range []string{"h1", "h2"} {
		h, err := l.Host(name)
		if err != nil {
			return nil, none, err
		}
		port := "mv" + name
		if err := steps(ctx, []string{nsMacvlanSw, "link", "add", port, "type", "veth", "peer", "name", "eth1", "netns", h.Netns},
			[]string{nsMacvlanSw, "link", "set", port, "master", "br0"},
			[]string{nsMacvlanSw, "link", "set", port, "up"},
			[]string{h.Netns, "link", "set", "eth1", "up"}); err != nil {
			return nil, none, err
		}
		d, err := l.StartDockerd(ctx, name)
		if err == nil {
			err = d.ImportBusybox(ctx)
		}
		if err == nil {
			_, err = d.Docker(ctx, "network", "create", "-d", "flatmesh", "--ipam-driver", "flatmesh", "--subnet", h.Underlay.Masked().String(),
				"--ip-range", l.FlatRange().String(), "--gateway", h.Gateway.String(), "fm")
		}
		if err == nil {
			_, err = d.Docker(ctx, "network", "create", "-d", "macvlan", "-o", "parent=eth1", "--subnet", macvlanSubnet, macvlanNet)
		}
		if err != nil {
			return nil, none, err
		}
		ds[name] = d
	}
	var ctr [4]dockerCtr
	for i, c := range []struct{ host, net, name, ip string }{
		{"h2", "fm", "fl2", ""}, {"h1", "fm", "fl1", ""},
		{"h2", macvlanNet, "mv2", macvlanAddr(2)}, {"h1", macvlanNet, "mv1", macvlanAddr(1)},
	} {
		if ctr[i], err = e.dockerContainerOn(ctx, ds[c.host], c.net, c.name, c.ip); err != nil {
			return nil, none, err
		}
	}
	if !ctr[0].addr.IsValid() || !ctr[2].addr.IsValid() {
		return nil, none, errors.New("flat peers: a container has no address")
	}
	hand, err := e.vethBridgePaths(ctx, l, nsMacvlanSw)
	if err != nil {
		return nil, none, err
	}
	att, err := labPath(l, "e", "attach-flat", "flatmesh attach flat")
	if err != nil {
		return nil, none, err
	}
	hand = append(hand, att)
	return append([]benchPath{
		{Key: "d", Name: "docker-flatmesh-flat", Label: "docker --network flatmesh flat", Client: ctr[1].ns, Server: ctr[0].ns, Addr: ctr[0].addr},
		{Key: "m", Name: "docker-macvlan", Label: "Docker macvlan, 2nd NIC", Client: ctr[3].ns, Server: ctr[2].ns, Addr: ctr[2].addr},
	}, hand...), flatDocker{l: l, d: ds["h1"], fl1: ctr[1].addr}, nil
}

// flatDocker is what the flat-mode run timings need: the lab, h1's dockerd
// and the address of its container fl1 (its block is h1's).
type flatDocker struct {
	l   *lab.Lab
	d   lab.Dockerd
	fl1 netip.Addr
}

// measureFlatPeers adds paths (d) and (m) and their ratio to rep.
func (e *env) measureFlatPeers(ctx context.Context, rep *SuiteReport) error {
	flat, d1, err := e.flatPeerPaths(ctx)
	if err != nil {
		return fmt.Errorf("flat mode and macvlan: %w", err)
	}
	rep.Setup = append(rep.Setup, macvlanSetup(), vethBridgeSetup())
	more, err := e.measure(ctx, "docker", flat)
	if err != nil {
		return err
	}
	rep.Paths = append(rep.Paths, more...)
	runs, err := e.timeFlatRuns(ctx, d1)
	if err != nil {
		return err
	}
	rep.DockerRun = append(rep.DockerRun, runs...)
	rep.computeRatios([][2]string{{"a", "b"}, {"a", "c"}, {"d", "m"}, {"w", "m"}, {"v", "w"}, {"d", "v"}, {"d", "e"}}, e.o.Streams)
	return nil
}

// macvlanSetup describes paths (d) and (m) for the suite's setup lines.
func macvlanSetup() string {
	return fmt.Sprintf("(d) lab %s, flat mode, one dockerd per host: fl1 (h1) -> fl2 (h2) on a flatmesh network; (m) mv1 (h1) -> mv2 (h2) on macvlan %s (parent eth1, a second NIC on a switch of its own, %s)",
		labDockerFlat, macvlanNet, macvlanSubnet)
}
