package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

// Docker's own answer to containers on several hosts, as a peer of the
// Docker suite's flatmesh path: a Swarm overlay network between the same
// two lab hosts (h1's dockerd the manager, h2's a worker), with Swarm's
// VXLAN data path moved to UDP 4790 (flatmesh's VXLAN holds 4789 in the
// same namespaces), and one busybox container per host on it.

const (
	swarmNet      = "swnet"
	swarmSubnet   = "10.231.0.0/24" // clear of the lab's underlay and overlay
	swarmDataPort = "4790"
	swarmTimeout  = 60 * time.Second
)

// swarmPath builds the Swarm overlay path (key c) and returns it with its
// teardown, which the caller runs even when swarmPath fails.
func (e *env) swarmPath(ctx context.Context, l *lab.Lab, ds map[string]lab.Dockerd) (benchPath, func() error, error) {
	mgr, wrk := ds["h1"], ds["h2"]
	teardown := func() error {
		c, cancel := context.WithTimeout(context.Background(), swarmTimeout)
		defer cancel()
		var errs []error
		for _, rm := range []struct {
			d    lab.Dockerd
			name string
		}{{mgr, "sw1"}, {wrk, "sw2"}} {
			_, _ = rm.d.Docker(c, "rm", "-f", rm.name) // absent when the setup failed early
		}
		if _, err := mgr.Docker(c, "network", "inspect", swarmNet); err == nil {
			_, err = mgr.Docker(c, "network", "rm", swarmNet)
			errs = append(errs, err)
		}
		for _, d := range []lab.Dockerd{wrk, mgr} {
			if out, err := d.Docker(c, "info", "--format", "{{.Swarm.LocalNodeState}}"); err == nil && strings.TrimSpace(string(out)) != "inactive" {
				_, err = d.Docker(c, "swarm", "leave", "--force")
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	h1, err := l.Host("h1")
	if err != nil {
		return benchPath{}, teardown, err
	}
	h2, err := l.Host("h2")
	if err != nil {
		return benchPath{}, teardown, err
	}
	e.say("swarm: init on h1 (data path port %s), join from h2, overlay network %s", swarmDataPort, swarmNet)
	mgrAddr := net.JoinHostPort(h1.Addr().String(), "2377")
	if _, err := mgr.Docker(ctx, "swarm", "init", "--advertise-addr", h1.Addr().String(), "--listen-addr", mgrAddr,
		"--data-path-port", swarmDataPort); err != nil {
		return benchPath{}, teardown, err
	}
	tok, err := mgr.Docker(ctx, "swarm", "join-token", "-q", "worker")
	if err != nil {
		return benchPath{}, teardown, err
	}
	if _, err := wrk.Docker(ctx, "swarm", "join", "--token", strings.TrimSpace(string(tok)),
		"--advertise-addr", h2.Addr().String(), "--listen-addr", net.JoinHostPort(h2.Addr().String(), "2377"), mgrAddr); err != nil {
		return benchPath{}, teardown, err
	}
	if _, err := mgr.Docker(ctx, "network", "create", "-d", "overlay", "--attachable", "--subnet", swarmSubnet, swarmNet); err != nil {
		return benchPath{}, teardown, err
	}
	srv, err := e.dockerContainerOn(ctx, wrk, swarmNet, "sw2", "")
	if err != nil {
		return benchPath{}, teardown, err
	}
	cli, err := e.dockerContainerOn(ctx, mgr, swarmNet, "sw1", "")
	if err != nil {
		return benchPath{}, teardown, err
	}
	return benchPath{Key: "c", Name: "swarm-overlay", Label: "Docker Swarm overlay",
		Client: cli.ns, Server: srv.ns, Addr: srv.addr}, teardown, nil
}

// swarmSetup describes path (c) for the suite's setup lines.
func swarmSetup() string {
	return fmt.Sprintf("(c) Docker containers sw1 (h1) -> sw2 (h2) on Swarm overlay %s (--attachable, %s), swarm data path UDP %s, same hosts and dockerds",
		swarmNet, swarmSubnet, swarmDataPort)
}
