package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
)

const (
	stopTimeout = 20 * time.Second // a graceful leave must finish in this time
	cliTimeout  = 30 * time.Second
	pollEvery   = 100 * time.Millisecond
	tailLines   = 25
)

// StartAgent starts host's agent: `nsenter --net=/run/netns/<netns> flatmesh
// agent <base args> <extraArgs>`, in its own session, output appended to the
// host's log file. The base arguments hold no --join (a restarted agent
// rejoins from its persisted members); pass "--join", addr to join. Later
// flags override earlier ones. It returns once the process is started; use
// WaitReady to wait for the socket. Starting a running agent is an error.
func (l *Lab) StartAgent(host string, extraArgs ...string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isDown {
		return errors.New("the lab is down")
	}
	h, err := l.d.hostByName(host)
	if err != nil {
		return err
	}
	if l.runningLocked(h) {
		return fmt.Errorf("agent %s is already running (pid %d)", h.Name, h.PID)
	}
	if err := os.MkdirAll(h.StateDir, 0o700); err != nil {
		return fmt.Errorf("agent %s: %w", h.Name, err)
	}
	f, err := os.OpenFile(h.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("agent %s log: %w", h.Name, err)
	}
	defer f.Close() // the child holds its own descriptor
	args := append(append([]string(nil), h.Args...), extraArgs...)
	fmt.Fprintf(f, "=== %s flatmesh lab: starting %s %s\n", time.Now().Format(time.RFC3339Nano), l.d.Binary, strings.Join(args, " "))
	cmd := exec.Command("nsenter", agentCommand(l.d.Mode, NetnsPath(h.Netns), l.d.Binary, args)...)
	cmd.Env = agentEnv(os.Environ())
	cmd.Dir = h.Dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting agent %s: %w", h.Name, err)
	}
	p := &agentProc{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	l.procs[h.Name] = p
	h.PID, h.Started, h.Stopped = p.pid, time.Now(), false
	l.log.Debug("agent started", "host", h.Name, "pid", p.pid, "args", args)
	return l.saveLocked()
}

// agentEnv drops FLATMESH_* variables, so the caller's environment cannot
// change a lab agent's settings behind the flags.
func agentEnv(env []string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, "FLATMESH_") {
			out = append(out, e)
		}
	}
	return out
}

// runningLocked reports whether h's agent process is alive.
func (l *Lab) runningLocked(h *Host) bool {
	if h.PID <= 0 {
		return false
	}
	if p := l.procs[h.Name]; p != nil && p.pid == h.PID {
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	return agentRunning(h.PID, h.StateDir)
}

// AgentRunning reports whether host's agent process is alive.
func (l *Lab) AgentRunning(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, err := l.d.hostByName(host)
	return err == nil && l.runningLocked(h)
}

// Signal sends sig to host's agent (its process group) without waiting,
// e.g. SIGHUP to reload.
func (l *Lab) Signal(host string, sig syscall.Signal) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, err := l.d.hostByName(host)
	if err != nil {
		return err
	}
	if !l.runningLocked(h) {
		return fmt.Errorf("agent %s is not running", h.Name)
	}
	if err := signalGroup(h.PID, sig); err != nil {
		return fmt.Errorf("signalling agent %s: %w", h.Name, err)
	}
	return nil
}

// StopAgent sends sig (SIGTERM: graceful leave; SIGKILL: crash) to host's
// agent and waits up to 20 s for it to exit. The host keeps its namespace,
// state dir and every kernel object the agent left behind.
func (l *Lab) StopAgent(host string, sig syscall.Signal) error {
	if err := l.Signal(host, sig); err != nil {
		return err
	}
	_, err := l.WaitAgentExit(host, stopTimeout)
	return err
}

// WaitAgentExit waits up to timeout for host's agent to exit on its own
// (after `flatmesh leave`, say) and returns its exit code: -1 when a signal
// ended it or when another process started it (its code is unknowable).
func (l *Lab) WaitAgentExit(host string, timeout time.Duration) (int, error) {
	l.mu.Lock()
	h, err := l.d.hostByName(host)
	if err != nil {
		l.mu.Unlock()
		return -1, err
	}
	pid, stateDir, p, logFile := h.PID, h.StateDir, l.procs[h.Name], h.LogFile
	l.mu.Unlock()
	if pid <= 0 {
		return -1, fmt.Errorf("agent %s is not running", host)
	}
	code, exited := -1, false
	if p != nil && p.pid == pid {
		select {
		case <-p.done:
			code, exited = p.state.ExitCode(), true
		case <-time.After(timeout):
		}
	} else {
		deadline := time.Now().Add(timeout)
		for !exited && time.Now().Before(deadline) {
			exited = !agentRunning(pid, stateDir)
			if !exited {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	if !exited {
		return -1, fmt.Errorf("agent %s (pid %d) did not exit within %s; log tail:\n%s", host, pid, timeout, tail(logFile, tailLines))
	}
	l.mu.Lock()
	if h, err := l.d.hostByName(host); err == nil && h.PID == pid {
		h.PID, h.Stopped = 0, true
		_ = l.saveLocked()
	}
	l.mu.Unlock()
	return code, nil
}

// stopAllLocked stops every running agent: SIGTERM to all at once, SIGKILL
// to those still running after grace.
func (l *Lab) stopAllLocked(grace time.Duration) error {
	var running []*Host
	for i := range l.d.Hosts {
		if h := &l.d.Hosts[i]; l.runningLocked(h) {
			l.say("stopping agent %s (pid %d)", h.Name, h.PID)
			_ = signalGroup(h.PID, syscall.SIGTERM)
			running = append(running, h)
		}
	}
	var errs []error
	deadline := time.Now().Add(grace)
	for _, h := range running {
		for l.runningLocked(h) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if l.runningLocked(h) {
			l.say("agent %s did not stop within %s: killing it", h.Name, grace)
			_ = signalGroup(h.PID, syscall.SIGKILL)
		}
	}
	deadline = time.Now().Add(5 * time.Second)
	for _, h := range running {
		for l.runningLocked(h) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if l.runningLocked(h) {
			errs = append(errs, fmt.Errorf("agent %s (pid %d) survived SIGKILL", h.Name, h.PID))
			continue
		}
		h.PID, h.Stopped = 0, true
	}
	return errors.Join(errs...)
}

// CLI runs `flatmesh <args> --socket <host's socket>` and returns its
// standard output. The error carries the command and its standard error.
func (l *Lab) CLI(host string, args ...string) ([]byte, error) {
	return l.CLIContext(context.Background(), host, args...)
}

// CLIContext is CLI with a context (and a 30 s ceiling).
func (l *Lab) CLIContext(ctx context.Context, host string, args ...string) ([]byte, error) {
	h, err := l.Host(host)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	defer cancel()
	full := withSocket(args, h.Socket)
	cmd := exec.CommandContext(ctx, l.Binary(), full...)
	cmd.Env = append(agentEnv(os.Environ()), "FLATMESH_SOCKET="+h.Socket)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("flatmesh %s (host %s): %w: %s",
			strings.Join(args, " "), h.Name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// withSocket appends --socket PATH to a command line, before a "--" if
// there is one.
func withSocket(args []string, socket string) []string {
	out := make([]string, 0, len(args)+2)
	for i, a := range args {
		if a == "--" {
			out = append(out, "--socket", socket)
			return append(out, args[i:]...)
		}
		out = append(out, a)
	}
	return append(out, "--socket", socket)
}

// AgentStatus is `flatmesh status --json`, the API's own type.
type AgentStatus = api.Status

// Peer is one entry of `flatmesh peers --json`, the API's own type.
type Peer = api.Peer

// AgentStatus asks host's agent for its status (`status --json`).
func (l *Lab) AgentStatus(ctx context.Context, host string) (AgentStatus, error) {
	var st AgentStatus
	out, err := l.CLIContext(ctx, host, "status", "--json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("host %s: decoding status: %w", host, err)
	}
	return st, nil
}

// Peers asks host's agent for its member list.
func (l *Lab) Peers(ctx context.Context, host string) ([]Peer, error) {
	var ps []Peer
	out, err := l.CLIContext(ctx, host, "peers", "--json")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(out, &ps); err != nil {
		return nil, fmt.Errorf("host %s: decoding peers: %w", host, err)
	}
	return ps, nil
}

// LogTail returns the last n lines of host's agent log.
func (l *Lab) LogTail(host string, n int) string {
	h, err := l.Host(host)
	if err != nil {
		return err.Error()
	}
	return tail(h.LogFile, n)
}

// tail returns the last n lines of a file (or why it cannot).
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return lastLines(string(b), n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
