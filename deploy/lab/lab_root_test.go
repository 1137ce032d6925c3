package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// testWriter sends progress lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// requireLabRoot skips unless root with the lab's tools, and honours -short.
func requireLabRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: root lab test in -short mode")
	}
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "ip", "nsenter", "go")
}

// assertNoNamespaces fails if any namespace of lab name remains.
func assertNoNamespaces(t *testing.T, name string) {
	t.Helper()
	left, err := labNamespaces(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Fatalf("namespaces of lab %s left behind: %v", name, left)
	}
}

// downOnCleanup tears l down at the end of the test, on failure too.
func downOnCleanup(t *testing.T, l *Lab) {
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range l.Hosts() {
				t.Logf("log tail of %s:\n%s", h.Name, l.LogTail(h.Name, 30))
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("down: %v", err)
		}
	})
}

// TestRootLabSmoke builds flatmesh, brings up a 2-host lab without
// containers (clearing a stale namespace of the same lab first), checks the
// agents see each other, then tears it down from a Load-ed copy, as another
// process would, and checks nothing is left.
func TestRootLabSmoke(t *testing.T) {
	requireLabRoot(t)
	bin := filepath.Join(t.TempDir(), "flatmesh")
	build := exec.Command("go", "build", "-o", bin, "github.com/flatmesh/flatmesh/cmd/flatmesh")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building flatmesh: %v\n%s", err, out)
	}
	name := kerneltest.UniqueName("lb")
	stale := name + "-h7"
	kerneltest.Run(t, "ip", "netns", "add", stale)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", stale).Run() })

	workDir := filepath.Join(t.TempDir(), "lab")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	l, err := Up(ctx, Options{Name: name, Hosts: 2, ContainersPerHost: NoContainers,
		Binary: bin, WorkDir: workDir, Progress: testWriter{t}})
	if err != nil {
		assertNoNamespaces(t, name)
		t.Fatalf("up: %v", err)
	}
	downOnCleanup(t, l)
	t.Logf("2-host lab up in %s", time.Since(start).Round(time.Millisecond))
	if netnsExists(stale) {
		t.Fatalf("stale namespace %s survived Up", stale)
	}
	checkTwoAgents(t, l)

	other, err := LoadDir(workDir)
	if err != nil {
		t.Fatal(err)
	}
	pids := []int{}
	for _, h := range other.Hosts() {
		pids = append(pids, h.PID)
		if !other.AgentRunning(h.Name) {
			t.Fatalf("the loaded lab does not see agent %s (pid %d) running", h.Name, h.PID)
		}
	}
	if err := other.Down(); err != nil {
		t.Fatalf("down: %v", err)
	}
	assertNoNamespaces(t, name)
	for _, pid := range pids {
		if !pidGone(pid) {
			t.Errorf("agent pid %d still running after Down", pid)
		}
	}
	if _, err := os.Stat(workDir); !os.IsNotExist(err) {
		t.Errorf("work dir %s still there: %v", workDir, err)
	}
	if err := other.Down(); err != nil {
		t.Fatalf("a second Down must be a no-op: %v", err)
	}
}

func checkTwoAgents(t *testing.T, l *Lab) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, h := range l.Hosts() {
		if !l.AgentRunning(h.Name) || h.PID <= 0 {
			t.Fatalf("agent %s is not running", h.Name)
		}
		peers, err := l.Peers(ctx, h.Name)
		if err != nil {
			t.Fatal(err)
		}
		alive := 0
		for _, p := range peers {
			if p.State == "alive" {
				alive++
			}
		}
		if alive != 2 {
			t.Fatalf("%s sees %d alive members, want 2: %+v", h.Name, alive, peers)
		}
	}
	st := l.Status()
	for _, h := range st.Hosts {
		if !h.NetnsPresent || !h.AgentRunning || h.Alive != 2 || h.Cluster != l.Name() {
			t.Fatalf("status of %s: %+v", h.Name, h)
		}
	}
	// The hosts reach each other over the switch.
	h1, h2 := l.Hosts()[0], l.Hosts()[1]
	if out, err := l.Exec(h1.Netns, "ping", "-c", "1", "-W", "2", h2.Addr().String()); err != nil {
		t.Fatalf("h1 -> h2 over the switch: %v\n%s", err, out)
	}
}

// TestRootLabUpFailureCleansUp runs Up with a "flatmesh" that exits at once:
// Up must fail naming the agent, and remove every namespace and file it
// made. No real agent is needed.
func TestRootLabUpFailureCleansUp(t *testing.T) {
	requireLabRoot(t)
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	name := kerneltest.UniqueName("lf")
	workDir := filepath.Join(t.TempDir(), "lab")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Up(ctx, Options{Name: name, Hosts: 2, Binary: bin, Insecure: true, WorkDir: workDir, Progress: testWriter{t}})
	if err == nil {
		_ = l.Down()
		t.Fatal("Up succeeded with an agent that exits at once")
	}
	if !strings.Contains(err.Error(), "agent h1 is not running") {
		t.Fatalf("the error should say the agent exited: %v", err)
	}
	assertNoNamespaces(t, name)
	if _, err := os.Stat(workDir); !os.IsNotExist(err) {
		t.Fatalf("work dir %s left behind: %v", workDir, err)
	}
}
