package cluster

import (
	"net/netip"
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

// A leave notice that arrives after memberlist's dead message (TCP slower
// than UDP on a loaded host: CI saw h1 keep h4 "failed" after its leave)
// still makes the member "left"; a notice long after a failure does not.
func TestLateLeaveNoticeTurnsFailedIntoLeft(t *testing.T) {
	now := time.Unix(1000, 0)
	tab := newMemberTable("self", time.Hour, func() time.Time { return now })
	lo := netip.MustParseAddr("127.0.0.1")
	tab.set("a", lo, 1, StateAlive, Meta{})
	tab.set("b", lo, 2, StateAlive, Meta{})
	if st := tab.gone("a", lo, 1, Meta{}); st != StateFailed {
		t.Fatalf("a without a notice: %s, want failed", st)
	}
	now = now.Add(time.Second)
	if !tab.noteLeaving("a") || stateIn(tab, "a") != StateLeft {
		t.Fatalf("a after a late notice: %s, want left", stateIn(tab, "a"))
	}
	if tab.gone("b", lo, 2, Meta{}) != StateFailed {
		t.Fatal("b should be failed")
	}
	now = now.Add(lateNotice + time.Second)
	if tab.noteLeaving("b") || stateIn(tab, "b") != StateFailed {
		t.Fatalf("b after a notice %s late: %s, want failed", lateNotice+time.Second, stateIn(tab, "b"))
	}
	if tab.noteLeaving("nobody") {
		t.Fatal("a notice from an unknown member changed something")
	}
}

func stateIn(tab *memberTable, name string) State {
	for _, p := range tab.list() {
		if p.Name == name {
			return p.State
		}
	}
	return ""
}
