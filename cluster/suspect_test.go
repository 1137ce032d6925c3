package cluster

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
)

// A suspected member is listed for the recheck with its gossip address
// while it is alive and marked; an answer clears the mark, no answer keeps
// it; marking one starts the recheck (onSuspect).
func TestSuspectRecheck(t *testing.T) {
	tb := newMemberTable("a", 0, nil)
	kicks := 0
	tb.onSuspect = func() { kicks++ }
	tb.set("b", netip.MustParseAddr("192.0.2.2"), 7496, StateAlive, Meta{})
	tb.set("c", netip.MustParseAddr("192.0.2.3"), 7496, StateAlive, Meta{})
	tb.set("d", netip.MustParseAddr("192.0.2.4"), 7496, StateFailed, Meta{})
	if s := tb.suspects(); len(s) != 0 {
		t.Fatalf("suspects before any suspicion: %v", s)
	}
	for _, n := range []string{"c", "b", "d"} {
		tb.noteLogLine([]byte("2026/11/30 [INFO] memberlist: Suspect " + n + " has failed, no acks received"))
	}
	if kicks != 2 {
		t.Errorf("%d recheck kicks, want 2 (a failed member is not marked)", kicks)
	}
	want := []suspectPeer{{"b", netip.MustParseAddrPort("192.0.2.2:7496")}, {"c", netip.MustParseAddrPort("192.0.2.3:7496")}}
	if s := tb.suspects(); !slices.Equal(s, want) {
		t.Fatalf("suspects %v, want %v", s, want)
	}
	var mu sync.Mutex
	var pinged []string
	pingSuspects(tb.suspects(), func(name string, addr netip.AddrPort) error {
		mu.Lock()
		pinged = append(pinged, name+"@"+addr.String())
		mu.Unlock()
		if name == "c" {
			return errors.New("no ack")
		}
		return nil
	}, tb.clearSuspect)
	slices.Sort(pinged)
	if !slices.Equal(pinged, []string{"b@192.0.2.2:7496", "c@192.0.2.3:7496"}) {
		t.Fatalf("pinged %v", pinged)
	}
	if s := tb.suspects(); len(s) != 1 || s[0].name != "c" {
		t.Fatalf("after the pings: %v, want c only (b answered)", s)
	}
	for _, p := range tb.list() {
		if want := map[string]State{"b": StateAlive, "c": StateSuspect}[p.Name]; want != "" && p.State != want {
			t.Errorf("%s listed %s, want %s", p.Name, p.State, want)
		}
	}
}
