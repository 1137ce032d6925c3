// Package kerneltest holds helpers for root tests that build real kernel
// objects: named network namespaces, veth pairs and commands run inside them.
// Everything a helper creates is removed by t.Cleanup, on failure too.
package kerneltest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// RequireRootEnv, when set to 1 (.ci/run sets it), turns the skips of
// RequireRoot and RequireCommands into failures: in CI a root test that does
// not run is a failure, not a silent skip.
const RequireRootEnv = "FLATMESH_REQUIRE_ROOT_TESTS"

// skip skips the test, or fails it when RequireRootEnv is set.
func skip(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(RequireRootEnv) == "1" {
		t.Fatalf("%s (%s=1: root tests must run, not skip)", msg, RequireRootEnv)
	}
	t.Skip(msg)
}

// RequireRoot skips the test with a clear message unless it runs as root
// (fails it instead when RequireRootEnv is set).
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		skip(t, "skipping: -short skips the root tests that build network namespaces")
	}
	if os.Geteuid() != 0 {
		skip(t, "skipping: this test builds network namespaces and needs root (CI runs it as root)")
	}
}

// RequireCommands skips the test when a program it needs is missing (fails
// it instead when RequireRootEnv is set).
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			skip(t, fmt.Sprintf("skipping: %s is not installed (.ci/run installs it)", n))
		}
	}
}

var seq atomic.Uint32

// UniqueName returns a short name (at most 15 bytes, so it fits a link name
// too) unique to this process: prefix + pid digits + counter.
func UniqueName(prefix string) string {
	n := fmt.Sprintf("%s%d%d", prefix, os.Getpid()%10000, seq.Add(1))
	if len(n) > 15 {
		n = n[len(n)-15:]
	}
	return n
}

// Netns creates a named network namespace (under /run/netns) with lo up and
// registers its deletion. It returns the name.
func Netns(t testing.TB, prefix string) string {
	t.Helper()
	name := UniqueName(prefix)
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// NetnsPath is the file that pins the named namespace.
func NetnsPath(name string) string { return "/run/netns/" + name }

// Run runs a command and fails the test with its output when it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := Output(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// Output runs a command (with a 60 s ceiling) and returns its combined output.
func Output(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return buf.String(), err
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return buf.String(), fmt.Errorf("timed out after 60s")
	}
}

// NsRun runs a command inside the named namespace and fails the test on error.
func NsRun(t testing.TB, ns string, name string, args ...string) string {
	t.Helper()
	return Run(t, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// NsOutput runs a command inside the named namespace.
func NsOutput(ns string, name string, args ...string) (string, error) {
	return Output("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Veth creates a veth pair between two namespaces (empty = the current one)
// and registers its deletion. Both ends are brought up.
func Veth(t testing.TB, nsA, ifA, nsB, ifB string) {
	t.Helper()
	args := []string{"link", "add", ifA}
	if nsA != "" {
		args = append([]string{"-n", nsA}, args...)
	}
	args = append(args, "type", "veth", "peer", "name", ifB)
	if nsB != "" {
		args = append(args, "netns", nsB)
	}
	Run(t, "ip", args...)
	t.Cleanup(func() {
		if nsA != "" {
			_ = exec.Command("ip", "-n", nsA, "link", "del", ifA).Run()
		} else {
			_ = exec.Command("ip", "link", "del", ifA).Run()
		}
	})
	up := func(ns, ifn string) {
		if ns != "" {
			Run(t, "ip", "-n", ns, "link", "set", ifn, "up")
		} else {
			Run(t, "ip", "link", "set", ifn, "up")
		}
	}
	up(nsA, ifA)
	up(nsB, ifB)
}

// Eventually polls cond every 100 ms until it returns true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
