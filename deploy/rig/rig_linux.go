package rig

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/hashicorp/go-hclog"
)

// Rig is a running rig. Its methods are safe for concurrent use.
type Rig struct {
	o   Options
	log hclog.Logger

	mu      sync.Mutex
	s       *state
	exited  map[string]chan struct{} // machines this process spawned: closed when nspawn is reaped
	timings Timings
}

func (r *Rig) say(format string, args ...any) {
	fmt.Fprintf(r.o.Progress, "rig %s: %s\n", r.o.Name, fmt.Sprintf(format, args...))
}

// Boot builds (or finds) the rootfs, makes the switch and boots one
// machine per host, waiting until each machine's systemd is up. A stale rig
// in the same work dir is torn down first. On error everything made is
// removed again.
func Boot(ctx context.Context, o Options) (*Rig, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	for _, p := range []string{"systemd-nspawn", "nsenter", "ip"} {
		if _, err := exec.LookPath(p); err != nil {
			return nil, fmt.Errorf("the rig needs %s (apt-get install systemd-container mmdebstrap): %w", p, err)
		}
	}
	if err := DownDir(ctx, o.WorkDir, o.Progress); err != nil && !errors.Is(err, ErrNoRig) {
		return nil, fmt.Errorf("tearing down a stale rig: %w", err)
	}
	r := &Rig{o: o, log: o.Logger.Named("rig"), exited: map[string]chan struct{}{}}
	start := time.Now()
	rootfs, built, err := EnsureRootfs(ctx, r.log, o.CacheDir, o.Rootfs)
	if err != nil {
		return nil, err
	}
	r.timings.Rootfs, r.timings.RootfsBuilt = time.Since(start), built
	r.say("rootfs %s (built now: %v, %s)", rootfs, built, r.timings.Rootfs.Round(time.Millisecond))
	if err := os.MkdirAll(o.WorkDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating work dir: %w", err)
	}
	r.s = &state{Name: o.Name, WorkDir: o.WorkDir, Rootfs: rootfs, Switch: switchNetns(o.Name)}
	if err := r.build(ctx); err != nil {
		if derr := r.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up: %w", derr))
		}
		return nil, err
	}
	return r, nil
}

func (r *Rig) build(ctx context.Context) error {
	if err := r.saveLocked(); err != nil {
		return err
	}
	if err := r.writeKey(); err != nil {
		return err
	}
	sw := r.s.Switch
	r.addNamespace(sw)
	if err := lab.CreateNetns(ctx, r.log, sw); err != nil {
		return err
	}
	if err := lab.CreateSwitch(ctx, r.log, sw); err != nil {
		return err
	}
	for i := 1; i <= r.o.Machines; i++ {
		m := r.planMachine(i)
		r.mu.Lock()
		r.s.Machines = append(r.s.Machines, m)
		r.s.Namespaces = append(r.s.Namespaces, m.Netns)
		err := r.saveLocked()
		r.mu.Unlock()
		if err != nil {
			return err
		}
		if err := lab.CreateNetns(ctx, r.log, m.Netns); err != nil {
			return err
		}
		if err := lab.PlugIn(ctx, r.log, sw, m.Name, m.Netns, m.Addr, netip.Addr{}); err != nil {
			return err
		}
		if err := mountRoot(r.s.Rootfs, m); err != nil {
			return err
		}
	}
	// Boot them all, then wait: they come up side by side.
	for _, m := range r.Machines() {
		if err := r.spawn(m.Name); err != nil {
			return err
		}
	}
	for _, m := range r.Machines() {
		if err := r.waitBooted(ctx, m.Name); err != nil {
			return err
		}
	}
	return nil
}

func (r *Rig) addNamespace(ns string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Namespaces = append(r.s.Namespaces, ns)
	_ = r.saveLocked()
}

func (r *Rig) saveLocked() error { return r.s.save() }

func (r *Rig) planMachine(i int) Machine {
	dir := filepath.Join(r.o.WorkDir, fmt.Sprintf("m%d", i))
	return Machine{
		Name:  fmt.Sprintf("m%d", i),
		Netns: machineNetns(r.o.Name, i),
		Root:  filepath.Join(dir, "root"),
		Upper: filepath.Join(dir, "upper"),
		Work:  filepath.Join(dir, "work"),
		Log:   filepath.Join(dir, "console.log"),
	}.withAddr(i)
}

// withAddr gives machine i the address 10.98.0.(10+i).
func (m Machine) withAddr(i int) Machine {
	a := subnet.Addr().As4()
	a[3] = byte(10 + i)
	m.Addr = netip.PrefixFrom(netip.AddrFrom4(a), subnet.Bits())
	return m
}

func (r *Rig) writeKey() error {
	key, err := cluster.GenerateKey()
	if err != nil {
		return err
	}
	path := filepath.Join(r.o.WorkDir, "gossip.key")
	_ = os.Remove(path)
	if err := cluster.WriteKeyFile(path, key); err != nil {
		return fmt.Errorf("writing the rig's gossip key: %w", err)
	}
	r.mu.Lock()
	r.s.KeyFile = path
	err = r.saveLocked()
	r.mu.Unlock()
	return err
}

// Machines lists the rig's machines.
func (r *Rig) Machines() []Machine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Machine(nil), r.s.Machines...)
}

// Machine returns the machine called name (m1..).
func (r *Rig) Machine(name string) (Machine, error) {
	for _, m := range r.Machines() {
		if m.Name == name {
			return m, nil
		}
	}
	return Machine{}, fmt.Errorf("no machine %q in rig %s", name, r.o.Name)
}

// Timings returns the figures measured so far.
func (r *Rig) Timings() Timings {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.timings
	t.Boot = append([]time.Duration(nil), t.Boot...)
	t.AgentReady = append([]time.Duration(nil), t.AgentReady...)
	return t
}

// spawn starts machine name's systemd-nspawn and records its PID.
func (r *Rig) spawn(name string) error {
	m, err := r.Machine(name)
	if err != nil {
		return err
	}
	r.say("booting %s (%s, %s)", m.Name, m.Netns, m.Addr)
	cmd, err := spawn(m, m.Netns)
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exited[name] = exited
	for i := range r.s.Machines {
		if r.s.Machines[i].Name == name {
			r.s.Machines[i].Nspawn = cmd.Process.Pid
		}
	}
	return r.saveLocked()
}

func (r *Rig) waitBooted(ctx context.Context, name string) error {
	m, err := r.Machine(name)
	if err != nil {
		return err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if _, err := waitBooted(ctx, m.Netns); err != nil {
		b, _ := os.ReadFile(m.Log)
		return fmt.Errorf("machine %s: %w\nconsole:\n%s", name, err, lastLines(string(b), 30))
	}
	d := time.Since(start)
	r.mu.Lock()
	r.timings.Boot = append(r.timings.Boot, d)
	r.mu.Unlock()
	r.say("%s is up (systemd running, %s)", name, d.Round(time.Millisecond))
	return nil
}

// Exec runs argv inside machine name (nsenter into its init's namespaces)
// and returns the combined output.
func (r *Rig) Exec(ctx context.Context, name string, argv ...string) ([]byte, error) {
	m, err := r.Machine(name)
	if err != nil {
		return nil, err
	}
	pid, err := pid1(m.Netns)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := nsenter(ctx, pid, argv...)
	if err != nil {
		return out, fmt.Errorf("machine %s: %w", name, err)
	}
	return out, nil
}

// RootPath is where path inside machine name is seen from the host (through
// its init's root, so tmpfs mounts inside the machine are included).
func (r *Rig) RootPath(name, path string) (string, error) {
	m, err := r.Machine(name)
	if err != nil {
		return "", err
	}
	pid, err := pid1(m.Netns)
	if err != nil {
		return "", fmt.Errorf("machine %s: %w", name, err)
	}
	return filepath.Join(fmt.Sprintf("/proc/%d/root", pid), path), nil
}

// CopyIn copies a host file into machine name at dst with mode.
func (r *Rig) CopyIn(name, src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	p, err := r.RootPath(name, dst)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return fmt.Errorf("copying %s into %s:%s: %w", src, name, dst, err)
	}
	return os.Chmod(p, mode)
}

// Reboot stops machine name (its systemd powers off: the agent gets
// SIGTERM from its unit) and boots it again from the same overlay.
func (r *Rig) Reboot(ctx context.Context, name string) error {
	if err := r.Shutdown(name); err != nil {
		return err
	}
	if err := r.spawn(name); err != nil {
		return err
	}
	return r.waitBooted(ctx, name)
}

// Shutdown stops machine name's systemd-nspawn.
func (r *Rig) Shutdown(name string) error {
	m, err := r.Machine(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	exited := r.exited[name]
	r.mu.Unlock()
	r.say("stopping %s", name)
	return stopNspawn(m.Nspawn, exited, 20*time.Second)
}

// Down stops every machine and removes the mounts, namespaces and work dir.
func (r *Rig) Down() error {
	r.mu.Lock()
	s := r.s
	exited := r.exited
	r.mu.Unlock()
	return down(context.Background(), s, exited, r.o.Progress)
}

// ArchName is GOARCH as Debian names it (for picking the .deb).
func ArchName() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	}
	return runtime.GOARCH
}
