package rig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

// execEnv is the environment of commands run inside a machine.
var execEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "TERM=dumb"}

// mountRoot mounts m's overlay: the shared rootfs below, m.Upper above.
func mountRoot(rootfs string, m Machine) error {
	for _, d := range []string{m.Root, m.Upper, m.Work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("machine %s: %w", m.Name, err)
		}
	}
	if mounted(m.Root) {
		return nil
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", rootfs, m.Upper, m.Work)
	if err := unix.Mount("overlay", m.Root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("machine %s: mounting its root overlay: %w", m.Name, err)
	}
	return nil
}

// mounted says whether dir is a mount point (its device differs from its
// parent's), which is all the rig needs for its own overlay mounts.
func mounted(dir string) bool {
	var a, b unix.Stat_t
	if unix.Stat(dir, &a) != nil || unix.Stat(filepath.Dir(dir), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

// spawn boots m with systemd-nspawn in its namespace and returns nspawn's
// process. The host has no system D-Bus: --register=no --keep-unit.
func spawn(m Machine, machineName string) (*exec.Cmd, error) {
	logf, err := os.OpenFile(m.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", m.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command("systemd-nspawn", "--boot", "--directory", m.Root,
		"--machine", machineName, "--hostname", m.Name,
		"--network-namespace-path", lab.NetnsPath(m.Netns),
		"--register=no", "--keep-unit", "--console=read-only", "--quiet",
		// nspawn keeps CAP_NET_ADMIN only for networks it makes itself; the
		// machine's namespace is its own, so the agent may program it.
		"--capability=CAP_NET_ADMIN")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("machine %s: starting systemd-nspawn: %w", m.Name, err)
	}
	return cmd, nil
}

// pid1 finds the machine's init: the process in m's network namespace
// whose PID in its own PID namespace is 1.
func pid1(netns string) (int, error) {
	var want unix.Stat_t
	if err := unix.Stat(lab.NetnsPath(netns), &want); err != nil {
		return 0, fmt.Errorf("namespace %s: %w", netns, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil || st.Ino != want.Ino || st.Dev != want.Dev {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == "NSpid:" && f[len(f)-1] == "1" {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("namespace %s: no machine is running in it", netns)
}

// nsenter runs argv inside the machine whose init is pid, with a minimal
// environment, and returns the combined output.
func nsenter(ctx context.Context, pid int, argv ...string) ([]byte, error) {
	args := append([]string{"-t", strconv.Itoa(pid), "-a", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = execEnv
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, lastLines(out.String(), 30))
	}
	return out.Bytes(), nil
}

// waitBooted waits until the machine's systemd finished booting (running or
// degraded) and returns its init's PID.
func waitBooted(ctx context.Context, netns string) (int, error) {
	var last error
	for {
		pid, err := pid1(netns)
		if err == nil {
			out, err := nsenter(ctx, pid, "systemctl", "is-system-running", "--wait")
			s := strings.TrimSpace(string(out))
			if s == "running" || s == "degraded" {
				return pid, nil
			}
			last = fmt.Errorf("systemctl is-system-running: %q (%v)", s, err)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("machine in %s did not boot: %w", netns, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stopNspawn stops a machine: SIGTERM to systemd-nspawn (its systemd
// powers off), SIGKILL after grace. exited, when not nil, is closed when the
// process is reaped (by this process); else /proc is polled.
func stopNspawn(pid int, exited <-chan struct{}, grace time.Duration) error {
	if pid <= 0 || !isNspawn(pid) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(pid, exited, grace) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(pid, exited, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("systemd-nspawn %d does not exit", pid)
}

func isNspawn(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(b)) == "systemd-nspawn"
}

func waitGone(pid int, exited <-chan struct{}, d time.Duration) bool {
	deadline := time.After(d)
	for {
		if exited != nil {
			select {
			case <-exited:
				return true
			default:
			}
		} else if !isNspawn(pid) {
			return true
		}
		select {
		case <-deadline:
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// unmountRoot unmounts m's overlay (lazily if something still holds it).
func unmountRoot(m Machine) error {
	if !mounted(m.Root) {
		return nil
	}
	if err := unix.Unmount(m.Root, 0); err != nil {
		if err2 := unix.Unmount(m.Root, unix.MNT_DETACH); err2 != nil {
			return errors.Join(fmt.Errorf("unmounting %s: %w", m.Root, err), err2)
		}
	}
	return nil
}
