package agent

import (
	"net/netip"
	"testing"
	"time"
)

// A member missing from the written rules is written at once (its tunnel
// packets are dropped until then); one gone is not urgent.
func TestFirewallGateNewMemberIsUrgent(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	var g firewallGate
	if g.newMember([]netip.Addr{a}) {
		t.Fatal("before the first write the settle gate decides (it writes at once)")
	}
	g.members = map[netip.Addr]bool{a: true, b: true}
	if g.newMember([]netip.Addr{a}) {
		t.Error("a member gone is not urgent")
	}
	if !g.newMember([]netip.Addr{a, netip.MustParseAddr("192.0.2.3")}) {
		t.Error("a new member must be written at once")
	}
}

// A ruleset change (Docker's FORWARD DROP) makes the next pass re-read the
// tables, at once when the last read is rulesetSettle old, else after it
// (the wake comes once, then the change is due).
func TestFirewallGateRulesetChangeIsRead(t *testing.T) {
	var g firewallGate
	now := time.Now()
	g.readGen, g.readAt = 3, now.Add(-time.Second)
	if g.rulesetChanged(3, now, nil) {
		t.Fatal("no change since the last read, but due")
	}
	if !g.rulesetChanged(4, now, nil) {
		t.Fatal("a change after an old read is not due at once")
	}
	g.readAt = now
	woke := make(chan struct{}, 4)
	wake := func() { woke <- struct{}{} }
	if g.rulesetChanged(4, now, wake) || g.rulesetChanged(5, now, wake) {
		t.Fatal("a change right after a read is due at once (storms would re-read per change)")
	}
	select {
	case <-woke:
	case <-time.After(5 * rulesetSettle):
		t.Fatal("no wake after rulesetSettle")
	}
	if !g.rulesetChanged(5, now.Add(rulesetSettle), wake) {
		t.Fatal("the change is not due after rulesetSettle")
	}
	if len(woke) != 0 {
		t.Fatalf("%d more wakes, want one for the burst", len(woke))
	}
}
