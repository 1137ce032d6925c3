// Package e2e holds the root tests that run real flatmesh agents in a
// network-namespace lab (deploy/lab) and check what users see: membership,
// addresses, and packets between containers on different hosts.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// binary is the flatmesh executable built once for all tests.
var binary string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // every test skips with a message
		}
		dir, err := os.MkdirTemp("", "flatmesh-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "flatmesh")
		// The agents run without the race detector by default: five of them
		// under -race on two cores starve memberlist's probes. Unit and
		// package tests run with -race; FLATMESH_E2E_RACE=1 races the agents too.
		args := []string{"build", "-o", binary}
		if os.Getenv("FLATMESH_E2E_RACE") == "1" {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "github.com/flatmesh/flatmesh/cmd/flatmesh")...).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building flatmesh: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// upLab brings up a lab for one test and tears it down afterwards, on
// failure too. The name is short and unique (it prefixes namespaces).
func upLab(t *testing.T, o lab.Options) *lab.Lab {
	t.Helper()
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "ip", "nsenter", "ping")
	if o.Name == "" {
		o.Name = kerneltest.UniqueName("e")
	}
	o.Binary = binary
	o.WorkDir = filepath.Join(t.TempDir(), "lab")
	o.Progress = testWriter{t}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, o)
	if l != nil {
		t.Cleanup(func() {
			if t.Failed() {
				for _, h := range l.Hosts() {
					t.Logf("log tail of %s:\n%s", h.Name, l.LogTail(h.Name, 40))
				}
			}
			if err := l.Down(); err != nil {
				t.Errorf("lab down: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// peerStates maps member name to state as host sees it.
func peerStates(t *testing.T, l *lab.Lab, host string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peers, err := l.Peers(ctx, host)
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, p := range peers {
		out[p.Name] = p.State
	}
	return out
}

// waitState waits until every host in observers sees member in state.
func waitState(t *testing.T, l *lab.Lab, observers []string, member, state string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	kerneltest.Eventually(t, timeout, fmt.Sprintf("%s to be %s everywhere", member, state), func() bool {
		for _, o := range observers {
			if peerStates(t, l, o)[member] != state {
				return false
			}
		}
		return true
	})
	return time.Since(start)
}

// cli runs the CLI against host and returns everything it said (stdout, and
// the error with stderr) so tests can check error messages.
func cli(l *lab.Lab, host string, args ...string) (string, error) {
	out, err := l.CLI(host, args...)
	text := string(out)
	if err != nil {
		text += err.Error()
	}
	return text, err
}
