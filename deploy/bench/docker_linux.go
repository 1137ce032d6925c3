package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

// The Docker suite: on a 2-host vxlan lab with a real dockerd
// per host, the time from `docker run -d` to the container's first
// answered ping, across hosts over a flatmesh network and on the same host
// over Docker's own bridge network (and flatmesh on the same host, for a
// like-for-like), interleaved; then throughput container to container over
// the Docker path against the `flatmesh attach` path of the same lab, and
// against Docker's own peers: a Swarm overlay on the same hosts
// (swarm_linux.go) and, on a flat-mode lab, macvlan on a second NIC
// (macvlan_linux.go).

const (
	labDocker   = "fbd"
	nsDockerCtr = "fbdc" // named links to Docker containers' namespaces
	dockerRuns  = 20
	bridgeNet   = "172.30.0.0/24"
)

var bridgeAddr = netip.MustParseAddr("172.30.0.10")

// DockerRunStats is one kind of `docker run` timed.
type DockerRunStats struct {
	Name  string        `json:"name"`
	Label string        `json:"label"`
	Stats *LatencyStats `json:"run_to_first_reply_ms,omitempty"`
	// Cmd is the `docker run -d` command alone; Plugin the time the
	// flatmesh plugin spent answering the run's calls (agent metrics), with
	// Calls the number of calls per run.
	Cmd    *LatencyStats `json:"docker_run_cmd_ms,omitempty"`
	Plugin *LatencyStats `json:"plugin_calls_ms,omitempty"`
	Calls  int           `json:"plugin_calls_per_run,omitempty"`
}

func (e *env) dockerSuite(ctx context.Context) (*SuiteReport, error) {
	rep := &SuiteReport{Title: "Docker network plugin: docker run --network flatmesh (vxlan) vs Docker's bridge; Docker path vs attach path; vs Swarm overlay and macvlan"}
	for _, p := range []string{lab.DockerCLI, "/usr/sbin/dockerd", "/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			return rep, fmt.Errorf("%s missing (install docker.io and busybox-static)", p)
		}
	}
	l, err := e.upLab(ctx, labDocker, lab.ModeVXLAN, "--metrics-addr", dockerMetricsAddr)
	if err != nil {
		return rep, err
	}
	ds := map[string]lab.Dockerd{}
	for _, h := range []string{"h1", "h2"} {
		d, err := l.StartDockerd(ctx, h)
		if err == nil {
			err = d.ImportBusybox(ctx)
		}
		if err == nil {
			_, err = d.Docker(ctx, "network", "create", "-d", "flatmesh", "--ipam-driver", "flatmesh", "--subnet", "10.213.0.0/16", "fm")
		}
		if err != nil {
			return rep, err
		}
		ds[h] = d
	}
	if _, err := ds["h1"].Docker(ctx, "network", "create", "-d", "bridge", "--subnet", bridgeNet, "dbr"); err != nil {
		return rep, err
	}
	srv, err := e.dockerContainer(ctx, ds["h2"], "web2", "")
	if err != nil {
		return rep, err
	}
	// One run without --ip finds an address of h1's block; the timed runs
	// ask for it again (an explicit address may be reused at once).
	first, err := e.dockerContainer(ctx, ds["h1"], "probe", "")
	if err != nil {
		return rep, err
	}
	rep.Setup = []string{
		fmt.Sprintf("lab %s: 2 hosts, flatmesh vxlan, one dockerd per host (vfs, iptables on), busybox from busybox-static", labDocker),
		fmt.Sprintf("run->reply: t0 before `docker run -d --ip`, t1 at the first reply of a 10 ms ping already running; %d runs each, interleaved", dockerRuns),
		"docker run -d alone: the CLI command's wall time, with --network none as the floor; plugin: the growth of h1's flatmesh_docker_call_duration_seconds sums over each run",
	}
	if _, err := ds["h1"].Docker(ctx, "rm", "-f", "probe"); err != nil {
		return rep, err
	}
	rep.DockerRun, err = e.timeDockerRuns(ctx, l, ds["h1"], srv.ns, first.addr)
	if err != nil {
		return rep, err
	}
	cli, err := e.dockerContainer(ctx, ds["h1"], "web1", "")
	if err != nil {
		return rep, err
	}
	a := benchPath{Key: "a", Name: "docker-flatmesh", Label: "docker run --network flatmesh", Client: cli.ns, Server: srv.ns, Addr: srv.addr}
	b, err := labPath(l, "b", "attach", "flatmesh attach")
	if err != nil {
		return rep, err
	}
	rep.Setup = append(rep.Setup, "(a) Docker containers web1 (h1) -> web2 (h2) on network fm; (b) attached c11 (h1) -> c21 (h2), same lab, same agents")
	c, teardown, err := e.swarmPath(ctx, l, ds)
	defer func() {
		if terr := teardown(); terr != nil {
			e.say("swarm teardown: %v", terr)
		}
	}()
	if err != nil {
		return rep, fmt.Errorf("swarm overlay: %w", err)
	}
	rep.Setup = append(rep.Setup, swarmSetup())
	rep.Paths, err = e.measure(ctx, "docker", []benchPath{a, b, c})
	if err != nil {
		return rep, err
	}
	rep.computeRatios([][2]string{{"a", "b"}, {"a", "c"}}, e.o.Streams)
	if terr := teardown(); terr != nil { // the deferred call finds nothing left
		e.say("swarm teardown: %v", terr)
	}
	return rep, e.measureFlatPeers(ctx, rep)
}

type dockerCtr struct {
	ns   string
	addr netip.Addr
}

// dockerContainer runs a busybox container on network fm and names its
// namespace (ip netns attach) so the bench's tools can enter it.
func (e *env) dockerContainer(ctx context.Context, d lab.Dockerd, name, ip string) (dockerCtr, error) {
	return e.dockerContainerOn(ctx, d, "fm", name, ip)
}

// dockerContainerOn is dockerContainer on any Docker network.
func (e *env) dockerContainerOn(ctx context.Context, d lab.Dockerd, network, name, ip string) (dockerCtr, error) {
	args := []string{"run", "-d", "--stop-timeout", "1", "--name", name, "--network", network}
	if ip != "" {
		args = append(args, "--ip", ip)
	}
	if _, err := d.Docker(ctx, append(args, lab.BusyboxImage, "sleep", "100000")...); err != nil {
		return dockerCtr{}, err
	}
	out, err := d.Docker(ctx, "inspect", "-f", "{{.State.Pid}} {{with index .NetworkSettings.Networks \""+network+"\"}}{{.IPAddress}}{{end}}", name)
	if err != nil {
		return dockerCtr{}, err
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return dockerCtr{}, fmt.Errorf("inspect %s: %q", name, out)
	}
	addr, err := netip.ParseAddr(f[1])
	if err != nil {
		return dockerCtr{}, fmt.Errorf("container %s address %q: %w", name, f[1], err)
	}
	ns := nsDockerCtr + "-" + d.Host + "-" + name
	e.mu.Lock()
	e.namespaces = append(e.namespaces, ns)
	e.mu.Unlock()
	if _, err := command(ctx, "ip", "netns", "attach", ns, f[0]); err != nil {
		return dockerCtr{}, err
	}
	return dockerCtr{ns: ns, addr: addr}, nil
}

// writeDockerRuns prints the run-to-reply figures of a suite, if any.
func writeDockerRuns(tw io.Writer, s *SuiteReport) {
	for _, r := range s.DockerRun {
		if r.Stats != nil {
			fmt.Fprintf(tw, "  docker run -> first reply: %s\tp50 %s\tp99 %s\t(n %d, failed %d) %s\n",
				r.Name, ms(r.Stats.P50), ms(r.Stats.P99), r.Stats.N, r.Stats.Failures, r.Label)
		}
	}
	for _, r := range s.DockerRun {
		if r.Cmd != nil {
			fmt.Fprintf(tw, "  docker run -d alone: %s\tp50 %s\tp99 %s\t(n %d)\n", r.Name, ms(r.Cmd.P50), ms(r.Cmd.P99), r.Cmd.N)
		}
	}
	for _, r := range s.DockerRun {
		if r.Plugin != nil {
			fmt.Fprintf(tw, "  flatmesh plugin time per docker run: %s\tp50 %s\tp99 %s\t(n %d, %d calls a run; aim < 20 ms)\n",
				r.Name, ms(r.Plugin.P50), ms(r.Plugin.P99), r.Plugin.N, r.Calls)
		}
	}
}
