package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

const (
	cmdTimeout     = 60 * time.Second
	cleanupTimeout = 2 * time.Minute
)

// Lab names (namespace prefixes "<name>-...") and the prefixes of the
// namespaces this program builds by hand. All start with "fb", the bench's
// namespace prefix, so nothing here can touch another user's namespaces.
const (
	labVXLAN  = "fbv"
	labFlat   = "fbf"
	nsRefVX   = "fbrv"  // hand-built VXLAN
	nsRefVXFW = "fbrw"  // hand-built VXLAN with flatmesh's firewall rules (--firewall-ref)
	nsRefVXRt = "fbrr"  // hand-built VXLAN, containers on routed veths (no bridge)
	nsRefVXRF = "fbrs"  // the same with flatmesh's firewall rules (--firewall-ref)
	nsNative  = "fbnt"  // routed, no encapsulation
	nsNativeB = "fbnb"  // routed, no encapsulation, containers on a bridge
	nsRefFlat = "fbrf"  // hand-built flat bridge
	nsRefFlFW = "fbrg"  // hand-built flat bridge with flatmesh's firewall rules (--firewall-ref)
	nsPlain   = "fbpl"  // plain NICs
	nsAttach  = "fbat"  // namespaces attached and detached for the attach figures
	labPrefix = "bench" // progress line prefix
)

// labVXLANDirect is the vxlan lab whose agents run --direct-routing.
const labVXLANDirect = "fbd"

// The labs whose agents run --compare-binary (path o).
const (
	labVXLANCompare = "fbo"
	labFlatCompare  = "fbg"
)

var ownNetnsRE = regexp.MustCompile(`^(` + strings.Join([]string{nsRefVX, nsRefVXFW, nsRefVXRt, nsRefVXRF, nsRefVXPM, nsNative, nsNativeB, nsRefFlat, nsRefFlFW, nsPlain, nsAttach, nsRefWG, nsRefWGFW, nsDockerCtr}, "|") + `)-[a-z0-9-]+$`)

// env is one run: options, where progress goes, and everything made so far,
// so that cleanup removes it (on success, failure or a signal alike).
//
// Concurrency: say and the recording methods are safe for concurrent use;
// cleanup must not run concurrently with the methods that build.
type env struct {
	o        options
	progress io.Writer

	mu         sync.Mutex
	namespaces []string   // made by hand, in creation order
	labs       []*lab.Lab // brought up by this run
}

func newEnv(o options, progress io.Writer) *env {
	return &env{o: o, progress: progress}
}

// say prints one progress line.
func (e *env) say(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(e.progress, labPrefix+": "+format+"\n", args...)
}

// prefixWriter prefixes every write (a lab writes whole lines) for progress.
type prefixWriter struct {
	e      *env
	prefix string
}

func (w prefixWriter) Write(p []byte) (int, error) {
	w.e.say("%s%s", w.prefix, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// command runs a command and returns its combined output; the error names the
// command and carries the output.
func command(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// commandInput is command with input on its standard input.
func commandInput(ctx context.Context, input, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdin = strings.NewReader(input)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// ip runs `ip -n ns args...` (in our own namespace only when ns is empty,
// which this program never does for changes).
func ip(ctx context.Context, ns string, args ...string) error {
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	_, err := command(ctx, "ip", args...)
	return err
}

// nsExec runs a command inside namespace ns.
func nsExec(ctx context.Context, ns string, cmd ...string) ([]byte, error) {
	return command(ctx, "ip", append([]string{"netns", "exec", ns}, cmd...)...)
}

// createNetns records ns for cleanup, then creates it with lo up.
func (e *env) createNetns(ctx context.Context, ns string) error {
	if _, err := os.Stat(lab.NetnsPath(ns)); err == nil {
		return fmt.Errorf("namespace %s already exists", ns)
	}
	e.mu.Lock()
	e.namespaces = append(e.namespaces, ns)
	e.mu.Unlock()
	if _, err := command(ctx, "ip", "netns", "add", ns); err != nil {
		return err
	}
	return ip(ctx, ns, "link", "set", "lo", "up")
}

// deleteNetns kills the processes left in ns, then deletes it (and with it
// every link inside). A missing namespace is not an error.
func deleteNetns(ctx context.Context, ns string) error {
	if _, err := os.Stat(lab.NetnsPath(ns)); err != nil {
		return nil
	}
	if out, err := command(ctx, "ip", "netns", "pids", ns); err == nil {
		var pids []int
		for _, f := range strings.Fields(string(out)) {
			if p, err := strconv.Atoi(f); err == nil && p != os.Getpid() {
				pids = append(pids, p)
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for _, p := range pids {
			for syscall.Kill(p, 0) == nil && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	if _, err := command(ctx, "ip", "netns", "del", ns); err != nil {
		if _, serr := os.Stat(lab.NetnsPath(ns)); serr == nil {
			return err
		}
	}
	return nil
}

// upLab brings up a lab of 2 hosts with 1 container each and records it.
func (e *env) upLab(ctx context.Context, name, mode string, agentArgs ...string) (*lab.Lab, error) {
	return e.upLabBinary(ctx, name, mode, e.o.Binary, agentArgs...)
}

// upLabBinary is upLab with agents running binary.
func (e *env) upLabBinary(ctx context.Context, name, mode, binary string, agentArgs ...string) (*lab.Lab, error) {
	agentArgs = append(agentArgs, e.o.AgentArgs...)
	e.say("bringing up lab %s (%s, 2 hosts x 1 container, %s) %s", name, mode, binary, strings.Join(agentArgs, " "))
	l, err := lab.Up(ctx, lab.Options{
		Name: name, Hosts: 2, Mode: mode, ContainersPerHost: 1, ExtraAgentArgs: agentArgs,
		Binary: binary, Progress: prefixWriter{e, "lab " + name + ": "},
	})
	if err != nil {
		return nil, fmt.Errorf("lab %s: %w", name, err)
	}
	e.mu.Lock()
	e.labs = append(e.labs, l)
	e.mu.Unlock()
	return l, nil
}

// cleanup removes everything recorded so far (labs, then hand-made
// namespaces, newest first), or with --keep says how to. It runs on its own
// context: the run's may be cancelled by a signal.
func (e *env) cleanup() error {
	e.mu.Lock()
	labs, nss := e.labs, e.namespaces
	e.labs, e.namespaces = nil, nil
	e.mu.Unlock()
	if e.o.Keep {
		for _, l := range labs {
			e.say("--keep: lab %s left up (remove: flatmesh lab down --name %s, or run the bench with --down)", l.Name(), l.Name())
		}
		if len(nss) > 0 {
			e.say("--keep: namespaces left: %s (the next run, or --down, removes them)", strings.Join(nss, " "))
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	for _, l := range labs {
		l.SetProgress(nil)
		e.say("tearing down lab %s", l.Name())
		errs = append(errs, l.Down())
	}
	if len(nss) > 0 {
		e.say("removing %d namespaces built by hand", len(nss))
	}
	for _, ns := range slices.Backward(nss) {
		errs = append(errs, deleteNetns(ctx, ns))
	}
	return errors.Join(errs...)
}

// removeStale removes what an earlier run left behind (--keep, a crash or a
// kill -9): the bench's labs and every namespace named like the bench's own.
func (e *env) removeStale(ctx context.Context) error {
	var errs []error
	for _, name := range []string{labVXLAN, labFlat, labWG, labDocker, labVXLANDirect, labScale, labDockerFlat, labVXLANCompare, labFlatCompare} {
		if l, err := lab.Load(name); err == nil {
			e.say("removing lab %s left by an earlier run", name)
			errs = append(errs, l.Down())
		}
		if left, err := lab.Purge(ctx, name, nil); err != nil {
			errs = append(errs, err)
		} else if len(left) > 0 {
			e.say("removed stale namespaces of lab %s: %s", name, strings.Join(left, " "))
		}
	}
	ents, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var stale []string
	for _, ent := range ents {
		if ownNetnsRE.MatchString(ent.Name()) {
			stale = append(stale, ent.Name())
		}
	}
	if len(stale) > 0 {
		e.say("removing %d namespaces left by an earlier run", len(stale))
	}
	// Containers before hosts before switches: a veth dies with either end.
	slices.SortFunc(stale, func(a, b string) int { return staleRank(a) - staleRank(b) })
	for _, ns := range stale {
		errs = append(errs, deleteNetns(ctx, ns))
	}
	return errors.Join(errs...)
}

func staleRank(ns string) int {
	switch {
	case strings.HasSuffix(ns, "-sw"):
		return 2
	case strings.Contains(ns, "-h"):
		return 1
	}
	return 0
}
