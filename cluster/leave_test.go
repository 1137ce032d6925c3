package cluster

import (
	"sync"
	"testing"
	"time"
)

// A node whose Meta.Leaving update never reached anyone (memberlist may send
// its leave message before the metadata update, issue 14: h5 once saw h4
// failed after h4's leave) is still "left", not "failed": the direct leave
// notice says so.
func TestLeaveSeenWithoutTheMetaFlag(t *testing.T) {
	nodes := startCluster(t, 3)
	eventually(t, 10*time.Second, "3 nodes alive", func() bool { return allAlive(nodes) })
	n2 := nodes[2]
	n2.stateMu.Lock()
	n2.left = true
	n2.stateMu.Unlock()
	n2.announceLeave()
	if err := n2.ml.Leave(2 * time.Second); err != nil { // no Meta.Leaving
		t.Fatal(err)
	}
	if err := n2.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "n2 gone on n0 and n1", func() bool {
		return stateOf(nodes[0], "n2") != StateAlive && stateOf(nodes[0], "n2") != StateSuspect &&
			stateOf(nodes[1], "n2") != StateAlive && stateOf(nodes[1], "n2") != StateSuspect
	})
	for _, n := range nodes[:2] {
		if st := stateOf(n, "n2"); st != StateLeft {
			t.Errorf("%s sees n2 %s after its leave, want left", n.cfg.Name, st)
		}
	}
}

// When every member leaves at the same moment nobody is left to hear the
// announcements; Leave must not sit out its whole timeout waiting for a
// broadcast that has no receiver.
func TestLeaveTogetherDoesNotWaitForTheTimeout(t *testing.T) {
	nodes := startCluster(t, 3)
	eventually(t, 10*time.Second, "3 nodes alive", func() bool { return allAlive(nodes) })
	const timeout = 5 * time.Second
	took := make([]time.Duration, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			if err := n.Leave(timeout); err != nil {
				t.Errorf("%s: %v", n.cfg.Name, err)
			}
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, d := range took {
		t.Logf("FIGURE: n%d left in %s (all three leaving at once)", i, d.Round(time.Millisecond))
		if d > timeout/2 {
			t.Errorf("n%d took %s to leave, want well under its %s timeout", i, d, timeout)
		}
	}
}

// memberlist suspects a node that stops answering before declaring it
// dead; Members reports that state (`flatmesh peers` shows it).
func TestSuspectReported(t *testing.T) {
	nodes := startCluster(t, 3)
	eventually(t, 10*time.Second, "3 nodes alive", func() bool { return allAlive(nodes) })
	if err := nodes[2].Shutdown(); err != nil { // no leave: like SIGKILL
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "n0 to suspect n2", func() bool { return stateOf(nodes[0], "n2") == StateSuspect })
	if got := len(nodes[0].AlivePeers()); got != 3 {
		t.Errorf("AlivePeers counts %d members while n2 is only suspect, want 3", got)
	}
	eventually(t, 15*time.Second, "n0 to mark n2 failed", func() bool { return stateOf(nodes[0], "n2") == StateFailed })
}
