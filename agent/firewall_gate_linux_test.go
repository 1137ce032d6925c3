package agent

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flatmesh/flatmesh/agent/firewall"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// Any change of the members (new, gone, replaced) is synced at once; the
// same members in another order are no change.
func TestFirewallGateMembersDiffer(t *testing.T) {
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	var g firewallGate
	if !g.membersDiffer(nil) {
		t.Fatal("before the first sync the set must be made")
	}
	g.synced([]netip.Addr{a, b})
	for _, tc := range []struct {
		members []netip.Addr
		want    bool
	}{
		{[]netip.Addr{b, a}, false},
		{[]netip.Addr{b, a, a}, false},
		{[]netip.Addr{a}, true},
		{[]netip.Addr{a, b, c}, true},
		{[]netip.Addr{a, c}, true},
		{nil, true},
	} {
		if got := g.membersDiffer(tc.members); got != tc.want {
			t.Errorf("members %v after syncing [a b]: differ %v, want %v", tc.members, got, tc.want)
		}
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

// TestRootFirewallGateSyncsMembersWithoutRewrites: in a namespace of its
// own, the gate's first call writes the rules and makes the member set; a
// member joining and one leaving change only the set, at once (no table
// written, whatever the settle gate says).
func TestRootFirewallGateSyncsMembersWithoutRewrites(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "iptables-save", "iptables-restore")
	ns := kerneltest.Netns(t, "fmg")
	var logged strings.Builder
	log := hclog.New(&hclog.LoggerOptions{Output: &logged, Level: hclog.Info})
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	o := firewall.Options{NetnsPath: kerneltest.NetnsPath(ns), Bridge: "fmgbr", Overlay: "fmgvx",
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.213.0.0/16")}, Masquerade: true,
		TunnelPorts: []uint16{4789}, Members: []netip.Addr{a}, Logger: log}
	t.Cleanup(func() { _ = firewall.Remove(o); _ = firewall.RemoveNoTrack(o) })
	var g firewallGate
	if err := g.ensure(o, 4789); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logged.String(), "firewall rules updated") {
		t.Fatalf("the first call wrote no rules:\n%s", logged.String())
	}
	set := func() []netip.Addr {
		t.Helper()
		got, exists, err := firewall.MemberSetAddrs(o.NetnsPath, firewall.IPv4)
		if err != nil || !exists {
			t.Fatalf("member set: exists %v, %v", exists, err)
		}
		return got
	}
	for _, members := range [][]netip.Addr{{a, b}, {b}} {
		logged.Reset()
		o.Members = members
		if err := g.ensure(o, 4789); err != nil {
			t.Fatal(err)
		}
		if got := set(); !slices.Equal(got, members) {
			t.Fatalf("members %v: the set holds %v", members, got)
		}
		if strings.Contains(logged.String(), "firewall rules updated") {
			t.Fatalf("members %v: rules written:\n%s", members, logged.String())
		}
	}
}
