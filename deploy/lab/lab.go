package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Lab is a running (or partly torn down) lab.
//
// Concurrency: every method is safe for concurrent use; methods that wait
// (WaitReady, WaitAlive, StopAgent, CLI, Exec, PingMesh) do not hold the
// lab's lock while they wait. Down is idempotent and may be called on a lab
// whose Up failed, or on a Load-ed lab from another process; after Down the
// Lab must not be used to start anything again.
type Lab struct {
	mu       sync.Mutex
	d        *description
	progress io.Writer
	log      hclog.Logger
	timeout  time.Duration
	procs    map[string]*agentProc // agents this process started, by host
	isDown   bool
}

// agentProc is an agent process started (and reaped) by this process.
type agentProc struct {
	pid   int
	done  chan struct{}    // closed once the process is reaped
	state *os.ProcessState // valid after done
}

func newLab(d *description, progress io.Writer, log hclog.Logger, timeout time.Duration) *Lab {
	if progress == nil {
		progress = io.Discard
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if timeout == 0 {
		timeout = 30*time.Second + time.Duration(len(d.Hosts))*2*time.Second
	}
	return &Lab{d: d, progress: progress, log: log, timeout: timeout, procs: map[string]*agentProc{}}
}

// say prints one progress line for people.
func (l *Lab) say(format string, args ...any) {
	fmt.Fprintf(l.progress, format+"\n", args...)
}

// Up builds the lab Options describe: switch, hosts, agents (waiting until
// every agent sees all the others alive), then containers. A stale lab of the
// same name (or in the same work dir) is torn down first. If any step fails,
// everything made so far is removed before Up returns the error.
func Up(ctx context.Context, opts Options) (*Lab, error) {
	o, err := opts.withDefaults(selfExecutable())
	if err != nil {
		return nil, err
	}
	if err := preflight(o); err != nil {
		return nil, err
	}
	if err := clearStale(ctx, o); err != nil {
		return nil, err
	}
	if err := checkWorkDir(o.WorkDir); err != nil {
		return nil, err
	}
	l := newLab(newDescription(o), o.Progress, o.Logger.Named("lab"), o.Timeout)
	start := time.Now()
	if err := l.build(ctx, o); err != nil {
		l.say("lab %s: %v", o.Name, err)
		if derr := l.Down(); derr != nil {
			return nil, errors.Join(err, fmt.Errorf("tearing down the half-built lab: %w", derr))
		}
		return nil, err
	}
	l.say("lab %s is up: %d hosts (%s), %d containers, in %s",
		o.Name, o.Hosts, o.Mode, len(l.Containers()), time.Since(start).Round(10*time.Millisecond))
	return l, nil
}

// preflight checks what Up needs before it makes anything.
func preflight(o Options) error {
	if !isRoot() {
		return errors.New("the lab builds network namespaces and needs root: run it as root")
	}
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("the lab needs %s (iproute2, util-linux): %w", tool, err)
		}
	}
	st, err := os.Stat(o.Binary)
	if err != nil {
		return fmt.Errorf("flatmesh binary: %w", err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("flatmesh binary %s is not an executable file", o.Binary)
	}
	if o.KeyFile != "" {
		if _, err := os.Stat(o.KeyFile); err != nil {
			return fmt.Errorf("gossip key file: %w", err)
		}
	}
	return nil
}

// clearStale tears down a lab left in o.WorkDir, and any namespace named
// like one of lab o.Name's that no description accounts for.
func clearStale(ctx context.Context, o Options) error {
	d, err := loadDescription(o.WorkDir)
	switch {
	case err == nil:
		fmt.Fprintf(o.Progress, "found a stale lab %s in %s: tearing it down first\n", d.Name, o.WorkDir)
		if err := newLab(d, o.Progress, o.Logger.Named("lab"), 0).Down(); err != nil {
			return fmt.Errorf("tearing down the stale lab: %w", err)
		}
	case !errors.Is(err, ErrNoLab):
		return fmt.Errorf("stale lab in %s: %w (remove the directory by hand)", o.WorkDir, err)
	}
	if _, err := purge(ctx, o.Name, o.Progress, o.Logger); err != nil {
		return fmt.Errorf("removing stale lab: %w", err)
	}
	return nil
}

// Purge removes every namespace named like one of lab name's (killing the
// processes inside first), for when its lab.json is gone. It returns the
// namespaces it removed. Up does this by itself before building.
func Purge(ctx context.Context, name string, progress io.Writer) ([]string, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("invalid lab name %q", name)
	}
	if progress == nil {
		progress = io.Discard
	}
	return purge(ctx, name, progress, hclog.NewNullLogger())
}

func purge(ctx context.Context, name string, progress io.Writer, log hclog.Logger) ([]string, error) {
	left, err := labNamespaces(name)
	if err != nil || len(left) == 0 {
		return nil, err
	}
	fmt.Fprintf(progress, "found namespaces of lab %s without a lab description %v: removing them\n", name, left)
	bare := &description{Name: name}
	var done []string
	for _, ns := range bare.teardownOrder(left) {
		if err := deleteNetns(ctx, log, ns); err != nil {
			return done, err
		}
		done = append(done, ns)
	}
	return done, nil
}

// build does Up's work on a fresh lab.
func (l *Lab) build(ctx context.Context, o Options) error {
	if err := l.save(); err != nil {
		return err
	}
	if !o.Insecure && o.KeyFile == "" {
		if err := l.generateKey(ctx); err != nil {
			return err
		}
	}
	if err := l.buildNetwork(ctx, o.Hosts); err != nil {
		return err
	}
	if err := l.startAgents(ctx); err != nil {
		return err
	}
	for _, h := range l.Hosts() {
		for range o.ContainersPerHost {
			if _, err := l.AddContainer(ctx, h.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *Lab) save() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.saveLocked()
}

func (l *Lab) saveLocked() error {
	if l.isDown {
		return errors.New("the lab is down")
	}
	return saveDescription(l.d)
}

func (l *Lab) generateKey(ctx context.Context) error {
	l.mu.Lock()
	l.d.KeyFile = filepath.Join(l.d.WorkDir, "gossip.key")
	l.d.KeyGenerated = true
	key, bin := l.d.KeyFile, l.d.Binary
	err := l.saveLocked()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	l.say("writing gossip key %s", key)
	if _, err := run(ctx, l.log, bin, "keygen", key); err != nil {
		return fmt.Errorf("generating the gossip key: %w", err)
	}
	return nil
}

// recordNamespace adds ns to the description and saves it, before the
// namespace is created.
func (l *Lab) recordNamespace(ns string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.d.addNamespace(ns)
	return l.saveLocked()
}

func (l *Lab) buildNetwork(ctx context.Context, hosts int) error {
	sw := l.d.Switch.Netns
	l.say("creating switch %s (bridge %s)", sw, bridgeName)
	if err := l.recordNamespace(sw); err != nil {
		return err
	}
	if err := createNetns(ctx, l.log, sw); err != nil {
		return err
	}
	if err := createSwitch(ctx, l.log, sw); err != nil {
		return err
	}
	if pm := l.d.Plain; pm != nil {
		l.say("creating plain machine %s (%s, %s, the LAN's router; no agent)", pm.Name, pm.Netns, pm.Addr)
		if err := l.recordNamespace(pm.Netns); err != nil {
			return err
		}
		if err := createNetns(ctx, l.log, pm.Netns); err != nil {
			return err
		}
		if err := plugIn(ctx, l.log, sw, pm.Name, pm.Netns, pm.Addr, netip.Addr{}); err != nil {
			return err
		}
	}
	if err := l.buildRouter(ctx); err != nil {
		return err
	}
	for i := 1; i <= hosts; i++ {
		if _, err := l.addHostNet(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// addHostNet makes host i's namespace, plugs it into the switch and creates
// its directory.
func (l *Lab) addHostNet(ctx context.Context, i int) (Host, error) {
	l.mu.Lock()
	h, err := l.d.planHost(i)
	if err == nil && len(containerNetns(l.d.Name, i, 9)) > maxNameLen {
		err = fmt.Errorf("host %d: its container namespace names would exceed %d bytes", i, maxNameLen)
	}
	if err == nil {
		l.d.addNamespace(h.Netns)
		l.d.Hosts = append(l.d.Hosts, h)
		err = l.saveLocked()
	}
	sw := l.d.Switch.Netns
	l.mu.Unlock()
	if err != nil {
		return h, err
	}
	l.say("creating host %s (%s, %s)", h.Name, h.Netns, h.Underlay)
	if err := createNetns(ctx, l.log, h.Netns); err != nil {
		return h, err
	}
	if err := plugIn(ctx, l.log, sw, h.Name, h.Netns, h.Underlay, h.Gateway); err != nil {
		return h, err
	}
	if err := l.moveToSubnet(ctx, h); err != nil {
		return h, err
	}
	if err := os.MkdirAll(h.StateDir, 0o700); err != nil {
		return h, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return h, nil
}

// startAgents starts h1, then every other host joining h1, and waits until
// all see each other.
func (l *Lab) startAgents(ctx context.Context) error {
	hosts := l.Hosts()
	first := hosts[0]
	l.say("starting agent %s in %s (log %s)", first.Name, first.Netns, first.LogFile)
	if err := l.StartAgent(first.Name); err != nil {
		return err
	}
	if err := l.WaitReady(ctx, first.Name); err != nil {
		return err
	}
	var rest []string
	for _, h := range hosts[1:] {
		l.say("starting agent %s in %s, joining %s (log %s)", h.Name, h.Netns, first.Addr(), h.LogFile)
		if err := l.StartAgent(h.Name, "--join", first.Addr().String()); err != nil {
			return err
		}
		rest = append(rest, h.Name)
	}
	if err := l.WaitReady(ctx, rest...); err != nil {
		return err
	}
	l.say("waiting for %d agents to see each other alive", len(hosts))
	return l.WaitAlive(ctx, len(hosts))
}

// AddHost adds one more host to a running lab (namespace, switch port,
// agent joining the first running host) and waits for its socket. It does
// not wait for membership: call WaitAlive.
func (l *Lab) AddHost(ctx context.Context) (Host, error) {
	hosts := l.Hosts()
	var join string
	for _, h := range hosts {
		if l.AgentRunning(h.Name) {
			join = h.Addr().String()
			break
		}
	}
	h, err := l.addHostNet(ctx, len(hosts)+1)
	if err != nil {
		return h, err
	}
	var extra []string
	if join != "" {
		extra = []string{"--join", join}
	}
	l.say("starting agent %s in %s (log %s)", h.Name, h.Netns, h.LogFile)
	if err := l.StartAgent(h.Name, extra...); err != nil {
		return h, err
	}
	return l.Host(h.Name)
}

// Load finds the lab called name in the default work root.
func Load(name string) (*Lab, error) {
	return LoadDir(filepath.Join(DefaultWorkRoot, name))
}

// LoadDir reads the lab described in workDir/lab.json, so another process
// can inspect it, drive its agents or tear it down.
func LoadDir(workDir string) (*Lab, error) {
	d, err := loadDescription(workDir)
	if err != nil {
		return nil, err
	}
	return newLab(d, nil, nil, 0), nil
}

// SetProgress sets where progress lines go (nil: nowhere).
func (l *Lab) SetProgress(w io.Writer) {
	if w == nil {
		w = io.Discard
	}
	l.mu.Lock()
	l.progress = w
	l.mu.Unlock()
}

// SetTimeout sets how long WaitReady and WaitAlive wait at most (a Load-ed
// lab starts with 30 s + 2 s per host).
func (l *Lab) SetTimeout(d time.Duration) {
	l.mu.Lock()
	l.timeout = d
	l.mu.Unlock()
}

// Down stops every agent (SIGTERM, then SIGKILL after a grace period),
// removes every namespace of the lab (and with them every link it made),
// and the work dir. It is idempotent and keeps going past errors, returning
// them joined.
func (l *Lab) Down() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.say("tearing down lab %s", l.d.Name)
	ctx := context.Background()
	var errs []error
	errs = append(errs, l.stopDockerds()) // docker_linux.go
	errs = append(errs, l.stopAllLocked(3*time.Second))
	found, err := labNamespaces(l.d.Name)
	errs = append(errs, err)
	for _, ns := range l.d.teardownOrder(found) {
		if netnsExists(ns) {
			l.say("removing namespace %s", ns)
		}
		errs = append(errs, deleteNetns(ctx, l.log, ns))
	}
	errs = append(errs, removeWorkDir(l.d))
	l.isDown = true
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tearing down lab %s: %w", l.d.Name, err)
	}
	return nil
}

// Name is the lab's name (its namespace prefix).
func (l *Lab) Name() string { l.mu.Lock(); defer l.mu.Unlock(); return l.d.Name }

// Mode is ModeVXLAN or ModeFlat.
func (l *Lab) Mode() string { l.mu.Lock(); defer l.mu.Unlock(); return l.d.Mode }

// WorkDir holds lab.json and one directory per host.
func (l *Lab) WorkDir() string { l.mu.Lock(); defer l.mu.Unlock(); return l.d.WorkDir }

// Binary is the flatmesh executable the lab runs.
func (l *Lab) Binary() string { l.mu.Lock(); defer l.mu.Unlock(); return l.d.Binary }

// KeyFile is the gossip key the agents use ("" when insecure).
func (l *Lab) KeyFile() string { l.mu.Lock(); defer l.mu.Unlock(); return l.d.KeyFile }

// FlatRange is the --flat-range given to flat-mode agents (zero in vxlan).
func (l *Lab) FlatRange() netip.Prefix { l.mu.Lock(); defer l.mu.Unlock(); return l.d.FlatRange }

// Switch is the switch namespace (bridge "sw0"; host i's port is "h<i>").
func (l *Lab) Switch() Machine { l.mu.Lock(); defer l.mu.Unlock(); return l.d.Switch }

// Plain is the flat variant's plain machine (router, no agent).
func (l *Lab) Plain() (Machine, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.d.Plain == nil {
		return Machine{}, false
	}
	return *l.d.Plain, true
}

// Hosts returns a copy of the hosts, in order.
func (l *Lab) Hosts() []Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Host, len(l.d.Hosts))
	for i, h := range l.d.Hosts {
		h.Args = append([]string(nil), h.Args...)
		out[i] = h
	}
	return out
}

// Host returns a copy of the host called name ("h1") or living in the
// namespace called name.
func (l *Lab) Host(name string) (Host, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, err := l.d.hostByName(name)
	if err != nil {
		return Host{}, err
	}
	c := *h
	c.Args = append([]string(nil), h.Args...)
	return c, nil
}

// Containers returns a copy of the attached containers, in attach order.
func (l *Lab) Containers() []Container {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Container(nil), l.d.Containers...)
}
