// Command flatmesh-bench prints flatmesh's benchmark figures (`make bench`):
// on a network-namespace lab (deploy/lab) with real agents, container to
// container TCP throughput (iperf3) and round trips over flatmesh's data
// planes and over reference paths built by hand with ip commands, their
// ratios, attach latency, join-to-routes time (VXLAN), and pings lost
// during the flat switch-over. Runs are interleaved (a, b, c, a, b, c...)
// and repeated; the table shows medians, --json every sample.
//
// It needs root, iproute2, ethtool, ping and iperf3, and the flatmesh binary
// (bin/flatmesh, `make build`). Everything it creates is named "fb..." and
// removed at the end, on failure and on Ctrl-C (--keep leaves it for
// debugging; the next run or --down removes it).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	Repeat   int
	Duration time.Duration // iperf3 -t, whole seconds
	Streams  []int
	Only     string // "", "vxlan", "flat" or "docker"
	JSON     bool
	Binary   string // absolute
	Keep     bool
	Down     bool
	Attaches int
	Burst    int // attaches fired at once for the burst figure
	Scale    int // > 0: run only the scale lab with this many hosts (make bench-scale)
	Joins    int // joins (vxlan) and switch-overs (flat) timed
	// FirewallRef adds path (e): the hand-built path plus the iptables
	// rules flatmesh's agents installed, to tell the firewall's cost from
	// the rest of the gap between (a) and (b).
	FirewallRef bool
	// FWMembers, with FirewallRef, makes (e) stand for a cluster of this
	// many members and adds path (g): the guard one rule per member
	// (fwmembers_linux.go).
	FWMembers int
	// CompareBinary adds path (o): flatmesh's path with agents running
	// this binary (an older build, say), measured in the same interleaved
	// run, so before and after share the machine's load.
	CompareBinary string
	// AgentArgs are appended to every flatmesh agent of the run (e.g.
	// --masquerade=false to measure what masquerading costs).
	AgentArgs []string
	// PerfDir, when set, gets a perf profile of one more run of every
	// path (perf_linux.go).
	PerfDir string
}

func (o options) durationSeconds() int { return int(o.Duration / time.Second) }

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("flatmesh-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.Repeat, "repeat", 3, "repetitions of every throughput and latency run (interleaved)")
	fs.DurationVar(&o.Duration, "duration", 3*time.Second, "iperf3 run length (whole seconds)")
	streams := fs.String("streams", "1,2", "iperf3 parallel stream counts, comma separated")
	fs.StringVar(&o.Only, "only", "", "run one suite only: vxlan, flat, wireguard or docker")
	fs.BoolVar(&o.JSON, "json", false, "print the report as JSON (progress still goes to stderr)")
	fs.StringVar(&o.Binary, "binary", "bin/flatmesh", "flatmesh binary the lab agents run")
	fs.BoolVar(&o.Keep, "keep", false, "leave labs and namespaces up at the end (debugging)")
	fs.BoolVar(&o.Down, "down", false, "only remove what an earlier run left (after --keep or a crash), then exit")
	fs.IntVar(&o.Attaches, "attaches", 100, "attaches (and detaches) timed for the attach latency")
	fs.IntVar(&o.Burst, "burst", 100, "attaches fired at once for the burst figure (vxlan)")
	fs.IntVar(&o.Scale, "scale", 0, "run only the scale lab with this many agent hosts, LAN gossip timing (make bench-scale)")
	fs.BoolVar(&o.FirewallRef, "firewall-ref", false, "add path (e): the hand-built path with flatmesh's iptables rules copied in")
	fs.IntVar(&o.FWMembers, "fw-members", 0, "with --firewall-ref (vxlan): (e) stands for a cluster of N members, and path (g) has the tunnel guard one rule per member")
	fs.StringVar(&o.CompareBinary, "compare-binary", "", "add path (o): flatmesh's path (vxlan, flat) with agents running this binary, same run")
	agentArgs := fs.String("agent-args", "", "arguments appended to every flatmesh agent of the run, space separated (e.g. --masquerade=false)")
	fs.StringVar(&o.PerfDir, "perf", "", "after each suite's runs, profile one more run of every path with perf record -a -g into this directory")
	fs.IntVar(&o.Joins, "joins", 0, "hosts joined (vxlan) and switched over (flat) for those figures; 0: --repeat")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: flatmesh-bench [flags]   (as root; make bench runs it)\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.AgentArgs, err = parseAgentArgs(*agentArgs); err != nil {
		return o, err
	}
	if o.Streams, err = parseStreams(*streams); err != nil {
		return o, err
	}
	if o.Joins == 0 {
		o.Joins = o.Repeat
	}
	switch {
	case o.Repeat < 1:
		return o, fmt.Errorf("--repeat %d: want at least 1", o.Repeat)
	case o.Duration < time.Second || o.Duration%time.Second != 0:
		return o, fmt.Errorf("--duration %s: want whole seconds, at least 1s", o.Duration)
	case o.Only != "" && o.Only != "vxlan" && o.Only != "flat" && o.Only != "wireguard" && o.Only != "docker":
		return o, fmt.Errorf("--only %q: want vxlan, flat, wireguard or docker", o.Only)
	case o.Attaches < 1 || o.Attaches > 500:
		return o, fmt.Errorf("--attaches %d: want 1..500", o.Attaches)
	case o.Scale != 0 && (o.Scale < 2 || o.Scale > 99):
		return o, fmt.Errorf("--scale %d: want 2..99 hosts", o.Scale)
	case o.Burst < 1 || o.Burst > 500:
		return o, fmt.Errorf("--burst %d: want 1..500", o.Burst)
	case o.Joins < 1 || o.Joins > 20:
		return o, fmt.Errorf("--joins %d: want 1..20", o.Joins)
	case o.FWMembers != 0 && (o.FWMembers < 2 || o.FWMembers > 4000):
		return o, fmt.Errorf("--fw-members %d: want 2..4000 (the two lab hosts count)", o.FWMembers)
	case o.FWMembers != 0 && !o.FirewallRef:
		return o, fmt.Errorf("--fw-members needs --firewall-ref (it sizes path (e) and adds path (g))")
	}
	if o.Binary, err = filepath.Abs(o.Binary); err != nil {
		return o, fmt.Errorf("--binary: %w", err)
	}
	if o.CompareBinary != "" {
		if o.CompareBinary, err = filepath.Abs(o.CompareBinary); err != nil {
			return o, fmt.Errorf("--compare-binary: %w", err)
		}
	}
	return o, nil
}

// parseAgentArgs splits --agent-args; every word must be a flag, so a
// stray value cannot shift the lab's own arguments.
func parseAgentArgs(s string) ([]string, error) {
	args := strings.Fields(s)
	for _, a := range args {
		if !strings.HasPrefix(a, "--") || !strings.Contains(a, "=") {
			return nil, fmt.Errorf("--agent-args %q: want --flag=value words, got %q", s, a)
		}
	}
	return args, nil
}

func parseStreams(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 16 {
			return nil, fmt.Errorf("--streams %q: want numbers 1..16, comma separated", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() { os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr)) }

func realMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "flatmesh-bench: %v\n", err)
		return 2
	}
	ctx, stop := signalContext(stderr)
	defer stop()
	rep, err := run(ctx, o, stderr)
	if rep != nil {
		if perr := printReport(stdout, rep, o.JSON); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "flatmesh-bench: %v\n", err)
		return 1
	}
	return 0
}

func printReport(w io.Writer, rep *Report, asJSON bool) error {
	if !asJSON {
		return writeTable(w, rep)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// signalContext is cancelled by the first SIGINT, SIGTERM or SIGHUP; later
// ones are swallowed (with a note) so the clean-up can finish.
func signalContext(progress io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		n := 0
		for sig := range ch {
			n++
			if n == 1 {
				fmt.Fprintf(progress, "bench: %v: stopping, then removing everything the bench made\n", sig)
				cancel()
				continue
			}
			fmt.Fprintf(progress, "bench: %v: still cleaning up, please wait (kill -9 leaves namespaces behind; --down removes them)\n", sig)
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}
