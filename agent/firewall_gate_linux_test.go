package agent

import (
	"net/netip"
	"testing"
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
