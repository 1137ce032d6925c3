package lab

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

func TestZombie(t *testing.T) {
	cases := map[string]bool{
		"123 (flatmesh) S 1 123":        false,
		"123 (weird) name) Z 1 123":     true,
		"123 (a (b) c) X 1":             true,
		"123 (flatmesh) R 1 123 0 0 0 ": false,
		"garbage":                       false,
	}
	for in, want := range cases {
		if zombie(in) != want {
			t.Errorf("zombie(%q) = %v", in, !want)
		}
	}
}

func TestCmdlineHasStateDir(t *testing.T) {
	cl := []byte("nsenter\x00--net=/run/netns/x\x00--\x00/bin/flatmesh\x00agent\x00--state-dir\x00/w/h1/state\x00")
	if !cmdlineHasStateDir(cl, "/w/h1/state") {
		t.Fatal("separate form")
	}
	if cmdlineHasStateDir(cl, "/w/h1") || cmdlineHasStateDir(cl, "/w/h2/state") {
		t.Fatal("prefix or other dir matched")
	}
	if !cmdlineHasStateDir([]byte("flatmesh\x00agent\x00--state-dir=/s\x00"), "/s") {
		t.Fatal("= form")
	}
}

// agentRunning must recognise a live process by its --state-dir, and stop
// recognising it once it exited, even before it is reaped (a zombie).
func TestAgentRunning(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30; :", "lab", "--state-dir", "/lab/test/state")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot run sh: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Until the child has exec'd, /proc shows the forked test binary.
	kerneltest.Eventually(t, 5*time.Second, "sh to show its command line", func() bool {
		return agentRunning(pid, "/lab/test/state")
	})
	if agentRunning(pid, "/lab/other/state") || agentRunning(os.Getpid(), "/lab/test/state") {
		t.Fatal("a process with another (or no) --state-dir is not that agent")
	}
	if err := signalGroup(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !pidGone(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if agentRunning(pid, "/lab/test/state") {
		t.Fatal("an exited (zombie) process must not count as running")
	}
	if agentRunning(0, "/x") || agentRunning(-1, "/x") {
		t.Fatal("pid <= 0")
	}
}
