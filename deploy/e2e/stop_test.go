package e2e

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

// maxStop is how long an idle agent may take from SIGTERM to exit (issue 14).
const maxStop = time.Second

// stopAndTime sends SIGTERM to host and returns how long it took to exit.
func stopAndTime(t *testing.T, l *lab.Lab, host string) time.Duration {
	t.Helper()
	start := time.Now()
	if err := l.Signal(host, syscall.SIGTERM); err != nil {
		t.Error(err)
		return 0
	}
	if _, err := l.WaitAgentExit(host, 10*time.Second); err != nil {
		t.Error(err)
	}
	return time.Since(start)
}

// TestRootSigtermLeavesFast: SIGTERM to one idle agent of three: it exits
// within maxStop and both others see it "left" (never "failed"). Then the
// two others get SIGTERM at the same moment (what `flatmesh lab down` does):
// each must still exit within maxStop, although nobody is left to hear its
// leave announcement.
func TestRootSigtermLeavesFast(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 3, ContainersPerHost: lab.NoContainers})
	names := hostNames(l)
	first, rest := names[0], names[1:]

	took := stopAndTime(t, l, first)
	t.Logf("FIGURE: %s exited %s after SIGTERM (2 members still running)", first, took.Round(time.Millisecond))
	if took > maxStop {
		t.Errorf("%s took %s from SIGTERM to exit, want under %s; log tail:\n%s", first, took.Round(time.Millisecond), maxStop, l.LogTail(first, 30))
	}
	waitState(t, l, rest, first, "left", 10*time.Second)

	var wg sync.WaitGroup
	times := make([]time.Duration, len(rest))
	for i, h := range rest {
		wg.Add(1)
		go func() { defer wg.Done(); times[i] = stopAndTime(t, l, h) }()
	}
	wg.Wait()
	for i, h := range rest {
		t.Logf("FIGURE: %s exited %s after SIGTERM sent to both remaining agents at once", h, times[i].Round(time.Millisecond))
		if times[i] > maxStop {
			t.Errorf("%s took %s from SIGTERM to exit, want under %s; log tail:\n%s", h, times[i].Round(time.Millisecond), maxStop, l.LogTail(h, 30))
		}
	}
}
