package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// tools the bench runs, and where they come from (Debian packages).
var tools = [][2]string{
	{"ip", "iproute2"}, {"bridge", "iproute2"}, {"nsenter", "util-linux"}, {"ethtool", "ethtool"},
	{"ping", "iputils-ping"}, {"sysctl", "procps"}, {"iperf3", "iperf3"},
}

// preflight checks what the bench needs before it builds anything.
func preflight(o options) error {
	if os.Geteuid() != 0 {
		return errors.New("the bench builds network namespaces and needs root: run it as root (sudo make bench)")
	}
	var missing, pkgs []string
	for _, t := range tools {
		if _, err := exec.LookPath(t[0]); err != nil {
			missing = append(missing, t[0])
			if !slices.Contains(pkgs, t[1]) {
				pkgs = append(pkgs, t[1])
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the bench needs %s, not found in PATH: install them (Debian: apt-get install %s)",
			strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	if o.Down {
		return nil
	}
	st, err := os.Stat(o.Binary)
	if err != nil {
		return fmt.Errorf("flatmesh binary: %w (build it first: make build, or pass --binary)", err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("flatmesh binary %s is not an executable file", o.Binary)
	}
	return nil
}

// run does the whole benchmark: stale leftovers out, then each suite, with
// everything it built removed after each suite (and on the way out). The
// report holds what was measured even when an error is returned.
func run(ctx context.Context, o options, progress io.Writer) (rep *Report, err error) {
	if err := preflight(o); err != nil {
		return nil, err
	}
	if err := closeInheritedOnExec(); err != nil {
		return nil, fmt.Errorf("marking inherited descriptors close-on-exec: %w", err)
	}
	e := newEnv(o, progress)
	if err := e.removeStale(ctx); err != nil {
		return nil, fmt.Errorf("removing an earlier run's leftovers: %w", err)
	}
	if o.Down {
		e.say("nothing of the bench is left")
		return nil, nil
	}
	defer func() { err = errors.Join(err, e.cleanup()) }()
	start := time.Now()
	rep = &Report{Started: start.UTC(), Kernel: kernelRelease(), CPUs: runtime.NumCPU(),
		Repeat: o.Repeat, DurationS: o.durationSeconds(), Streams: o.Streams, AgentArgs: o.AgentArgs}
	suites := []struct {
		name string
		run  func(context.Context) (*SuiteReport, error)
		into **SuiteReport
	}{
		{"vxlan", e.vxlanSuite, &rep.VXLAN},
		{"flat", e.flatSuite, &rep.Flat},
		{"wireguard", e.wireguardSuite, &rep.WireGuard},
		{"docker", e.dockerSuite, &rep.Docker},
	}
	var errs []error
	if o.Scale > 0 {
		rep.Scale, err = e.scaleSuite(ctx)
		if err != nil && ctx.Err() == nil {
			rep.Incomplete = append(rep.Incomplete, "scale: "+err.Error())
			errs = append(errs, fmt.Errorf("scale: %w", err))
		}
		suites = nil
	}
	for _, s := range suites {
		if (o.Only != "" && o.Only != s.name) || ctx.Err() != nil {
			continue
		}
		sr, serr := s.run(ctx)
		*s.into = sr
		if serr != nil && ctx.Err() == nil {
			rep.Incomplete = append(rep.Incomplete, s.name+": "+serr.Error())
			errs = append(errs, fmt.Errorf("%s: %w", s.name, serr))
		}
		errs = append(errs, e.cleanup())
	}
	if ctx.Err() != nil {
		rep.Incomplete = append(rep.Incomplete, "interrupted")
		errs = append(errs, errors.New("interrupted"))
	}
	rep.ElapsedS = time.Since(start).Seconds()
	return rep, errors.Join(errs...)
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
