package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The IPv4 neighbour (ARP) table's limits are machine-wide: every network
// namespace's entries count against net.ipv4.neigh.default.gc_thresh3 of
// the initial namespace (1024 by default), and above gc_thresh2 the kernel
// evicts entries and refuses new ones ("No buffer space available"). A lab
// of n hosts on one machine needs about n*(n-1) entries for the hosts
// alone, so 40 or 50 hosts overflow it: hosts lose their neighbours,
// memberlist probes go unanswered and members flap failed/alive. One real
// host of a 50-host cluster needs 49 entries: this is the lab's limit, not
// flatmesh's.
const neighDir = "/proc/sys/net/ipv4/neigh/default/"

// raiseNeighLimits raises gc_thresh2 and gc_thresh3 to fit n lab hosts
// (with room for containers and whatever else runs here) and returns a
// function that puts back the values it changed, and a note for the
// report ("" when nothing changed).
func raiseNeighLimits(n int) (restore func(), note string, err error) {
	need3 := 2*n*n + 1024
	need2 := need3 * 3 / 4
	var changed []string
	var undo []func()
	restore = func() {
		for _, u := range undo {
			u()
		}
	}
	for _, s := range []struct {
		key  string
		need int
	}{{"gc_thresh3", need3}, {"gc_thresh2", need2}} {
		b, err := os.ReadFile(neighDir + s.key)
		if err != nil {
			return restore, "", fmt.Errorf("reading %s: %w", s.key, err)
		}
		cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || cur >= s.need {
			continue
		}
		if err := os.WriteFile(neighDir+s.key, []byte(strconv.Itoa(s.need)), 0o644); err != nil {
			return restore, "", fmt.Errorf("raising %s to %d: %w", s.key, s.need, err)
		}
		key, old := s.key, cur
		undo = append(undo, func() { _ = os.WriteFile(neighDir+key, []byte(strconv.Itoa(old)), 0o644) })
		changed = append(changed, fmt.Sprintf("%s %d -> %d", key, cur, s.need))
	}
	if len(changed) > 0 {
		note = "machine-wide ARP table limits raised for the run (net.ipv4.neigh.default " + strings.Join(changed, ", ") +
			"; restored after): all namespaces share them and the lab needs about hosts^2 entries"
	}
	return restore, note, nil
}
