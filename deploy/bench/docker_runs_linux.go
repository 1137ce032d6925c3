package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

// dockerRunKind is one kind of `docker run` timed.
type dockerRunKind struct {
	name, label, from string // from: the namespace that pings; "" = no ping
	to                netip.Addr
	args              []string
	plugin            bool // flatmesh's plugin answers its calls
}

// dockerRunSample is one run: the command alone, run->first reply (0
// without a ping) and the plugin's time and calls.
type dockerRunSample struct {
	cmd, reply, plugin float64
	calls              int
}

// timeDockerRuns interleaves the kinds of runs dockerRuns times.
func (e *env) timeDockerRuns(ctx context.Context, l *lab.Lab, d lab.Dockerd, peerNS string, fmAddr netip.Addr) ([]DockerRunStats, error) {
	h1, err := l.Host("h1")
	if err != nil {
		return nil, err
	}
	kinds := []dockerRunKind{
		{"flatmesh-cross", "flatmesh network, ping from a container on the other host", peerNS, fmAddr, []string{"--network", "fm", "--ip", fmAddr.String()}, true},
		{"flatmesh-local", "flatmesh network, ping from the same host", h1.Netns, fmAddr, []string{"--network", "fm", "--ip", fmAddr.String()}, true},
		{"flatmesh-auto", "flatmesh network, no --ip", "", netip.Addr{}, []string{"--network", "fm"}, true},
		{"docker-bridge", "Docker's bridge network, ping from the same host", h1.Netns, bridgeAddr, []string{"--network", "dbr", "--ip", bridgeAddr.String()}, false},
		{"none", "--network none", "", netip.Addr{}, []string{"--network", "none"}, false},
	}
	e.say("timing docker run, %d x %d runs", dockerRuns, len(kinds))
	samples, fails, err := e.runKinds(ctx, d, h1.Netns, kinds, dockerRuns)
	if err != nil {
		return nil, err
	}
	var out []DockerRunStats
	var errs []error
	for k, kind := range kinds {
		if len(samples[k]) == 0 {
			errs = append(errs, fmt.Errorf("%s: no run succeeded", kind.name))
			continue
		}
		out = append(out, runStats(kind, samples[k], fails[k]))
	}
	return out, errors.Join(errs...)
}

// runKinds runs every kind n times, interleaved; a failed run is counted
// and said, not fatal.
func (e *env) runKinds(ctx context.Context, d lab.Dockerd, agentNS string, kinds []dockerRunKind, n int) ([][]dockerRunSample, []int, error) {
	samples := make([][]dockerRunSample, len(kinds))
	fails := make([]int, len(kinds))
	for i := 0; i < n; i++ {
		for k, kind := range kinds {
			s, err := e.dockerRunOnce(ctx, d, agentNS, kind)
			if err != nil {
				if ctx.Err() != nil {
					return nil, nil, ctx.Err()
				}
				e.say("%s run %d: %v", kind.name, i+1, err)
				fails[k]++
				continue
			}
			samples[k] = append(samples[k], s)
		}
	}
	return samples, fails, nil
}

func runStats(kind dockerRunKind, ss []dockerRunSample, fails int) DockerRunStats {
	var cmd, reply, plugin []float64
	calls := 0
	for _, s := range ss {
		cmd, reply, plugin = append(cmd, s.cmd), append(reply, s.reply), append(plugin, s.plugin)
		calls = max(calls, s.calls)
	}
	r := DockerRunStats{Name: kind.name, Label: kind.label, Cmd: newLatency(cmd, fails)}
	if kind.from != "" {
		r.Stats = newLatency(reply, fails)
	}
	if kind.plugin {
		r.Plugin, r.Calls = newLatency(plugin, fails), calls
	}
	return r
}

// dockerRunOnce: ping kind.to from kind.from every 10 ms (if it pings),
// docker run -d, wait for the first reply, read the plugin's time from the
// agent of agentNS, then remove the container.
func (e *env) dockerRunOnce(ctx context.Context, d lab.Dockerd, agentNS string, kind dockerRunKind) (dockerRunSample, error) {
	var s dockerRunSample
	var p *pinger
	if kind.from != "" {
		var err error
		if p, err = startPinger(kind.from, kind.to, 10*time.Millisecond); err != nil {
			return s, err
		}
		defer p.stop()
	}
	var seq int
	if p != nil {
		if seq = p.lastReply(); seq != 0 {
			return s, fmt.Errorf("%s answers before the run (a leftover container)", kind.to)
		}
	}
	before, err := scrapeDockerCalls(ctx, agentNS)
	if err != nil {
		return s, err
	}
	// A failed run may leave the container created: remove it either way.
	defer func() { _, _ = d.Docker(context.Background(), "rm", "-f", "timed") }()
	start := time.Now()
	run := append([]string{"run", "-d", "--stop-timeout", "1", "--name", "timed"}, kind.args...)
	if _, err := d.Docker(ctx, append(run, lab.BusyboxImage, "sleep", "100000")...); err != nil {
		return s, err
	}
	s.cmd = msSince(start)
	if p != nil {
		if err := p.waitReplyAfter(ctx, seq, 10*time.Second); err != nil {
			return s, err
		}
		s.reply = msSince(start)
	}
	after, err := scrapeDockerCalls(ctx, agentNS)
	if err != nil {
		return s, err
	}
	s.plugin, s.calls = after.since(before)
	return s, nil
}

// flatRuns is how many flat-mode runs are timed: each probes the LAN for
// its address (700 ms), so a few tell the story.
const flatRuns = 5

// timeFlatRuns times `docker run -d` on the flat lab's flatmesh network,
// without and with --ip, and the plugin's share (agent of h1's namespace).
func (e *env) timeFlatRuns(ctx context.Context, f flatDocker) ([]DockerRunStats, error) {
	h1, err := f.l.Host("h1")
	if err != nil {
		return nil, err
	}
	// An address of h1's block (a block belongs to one host), at its top:
	// clear of the few it holds (spares take the lowest free ones).
	fixed := netip.PrefixFrom(f.fl1, 28).Masked().Addr()
	for range 14 {
		fixed = fixed.Next()
	}
	kinds := []dockerRunKind{
		{name: "flat-auto", label: "flatmesh network, flat mode, no --ip", args: []string{"--network", "fm"}, plugin: true},
		{name: "flat-ip", label: "flatmesh network, flat mode, --ip", args: []string{"--network", "fm", "--ip", fixed.String()}, plugin: true},
		{name: "flat-none", label: "--network none, flat lab", args: []string{"--network", "none"}},
	}
	e.say("timing docker run in flat mode, %d x %d runs", flatRuns, len(kinds))
	samples, fails, err := e.runKinds(ctx, f.d, h1.Netns, kinds, flatRuns)
	if err != nil {
		return nil, err
	}
	var out []DockerRunStats
	for k, kind := range kinds {
		if len(samples[k]) > 0 {
			out = append(out, runStats(kind, samples[k], fails[k]))
		}
	}
	return out, nil
}
