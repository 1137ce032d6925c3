package firewall

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// waitChange waits for a ruleset change event.
func waitChange(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(3 * time.Second):
		t.Fatalf("no nftables change event after %s", what)
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// TestFmwOnlyWhenNeededFollowsDocker: on a host with an open FORWARD the
// FORWARD chain is left out (traffic flows anyway); the watch reports
// Docker's ruleset arriving, and the next Ensure puts the chain first
// under Docker's DROP, so container traffic flows again; masquerade keeps
// its chain and the notrack chains throughout; Remove leaves nothing.
func TestFmwOnlyWhenNeededFollowsDocker(t *testing.T) {
	l := newLab(t)
	o := l.opts(true)
	o.OnlyWhenNeeded = true
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	changes := make(chan struct{}, 64)
	if err := WatchChanges(ctx, o.NetnsPath, func() { changes <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	ensure := func() {
		t.Helper()
		if err := Ensure(o); err != nil {
			t.Fatal(err)
		}
		if err := EnsureNoTrack(o, 4789); err != nil {
			t.Fatal(err)
		}
		if p, err := Check(o); err != nil || len(p) != 0 {
			t.Fatalf("Check = %q, %v", p, err)
		}
		if p, err := CheckNoTrack(o, 4789); err != nil || len(p) != 0 {
			t.Fatalf("CheckNoTrack = %q, %v", p, err)
		}
	}
	ensure()
	waitChange(t, changes, "our own Ensure")
	s := iptablesSave(t, l.router, "iptables-save")
	if strings.Contains(s, ForwardChain) || !strings.Contains(s, PostroutingChain) || !strings.Contains(s, NoTrackChain) {
		t.Fatalf("open FORWARD, masquerade on: want nat and notrack chains only:\n%s", s)
	}
	outPort, outPeers := listen(t, l.outside)
	if got := sourceSeen(t, l.c1, worldAddr, outPort, outPeers); got.String() != routerUp {
		t.Fatalf("world saw %s, want the masqueraded %s", got, routerUp)
	}

	drain(changes)
	l.dockerize(t)
	waitChange(t, changes, "Docker's ruleset was loaded")
	if canPing(l.c1, worldAddr) {
		t.Fatal("container traffic passes Docker's DROP before Ensure ran again")
	}
	ensure()
	if s := iptablesSave(t, l.router, "iptables-save"); !strings.Contains(s, "-A FORWARD -j "+ForwardChain) {
		t.Fatalf("no FORWARD jump under Docker's DROP:\n%s", s)
	}
	if !canPing(l.c1, worldAddr) || !canPing(l.c1, c2Addr) {
		t.Fatal("container traffic dropped under Docker's DROP after Ensure")
	}
	if err := errors.Join(Remove(o), RemoveNoTrack(o)); err != nil {
		t.Fatal(err)
	}
	if s := iptablesSave(t, l.router, "iptables-save"); strings.Contains(s, "FLATMESH") {
		t.Fatalf("left after Remove:\n%s", s)
	}
}

// TestFmwOnlyWhenNeededFlatAddsNothing: flat mode on a host without other
// rules needs no chain at all: the tables stay empty, as on a bridge built
// by hand, and bridged traffic flows.
func TestFmwOnlyWhenNeededFlatAddsNothing(t *testing.T) {
	l := newLab(t)
	kerneltest.NsRun(t, l.router, "sh", "-c", "test ! -d /proc/sys/net/bridge || echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables")
	o := Options{NetnsPath: kerneltest.NetnsPath(l.router), Bridge: labBridge, Flat: true, OnlyWhenNeeded: true,
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(labCIDR)}}
	if err := errors.Join(Ensure(o), EnsureNoTrack(o, 0)); err != nil {
		t.Fatal(err)
	}
	if s := strings.TrimSpace(iptablesSave(t, l.router, "iptables-save")); s != "" {
		t.Fatalf("flat mode on an open host wrote:\n%s", s)
	}
	if !canPing(l.c1, c2Addr) {
		t.Fatal("bridged container traffic dropped")
	}
	if p, err := Check(o); err != nil || len(p) != 0 {
		t.Fatalf("Check = %q, %v", p, err)
	}
}

// TestFmwNoTrackFollowsNftables: the notrack chains go in where nf_tables
// makes the kernel track, and only there. A nat table holding only a user
// chain (Docker's under --bridge=none) hooks nothing, though iptables-save
// prints nat's built-in chains for it: no chain. A native nftables table
// with a `ct state` rule (firewalld's kind), which iptables-save does not
// show, tracks every packet: the chains go in and cluster traffic is not
// tracked (without them it is). The table gone, the chains go too.
func TestFmwNoTrackFollowsNftables(t *testing.T) {
	l := newLab(t)
	kerneltest.RequireCommands(t, "nft")
	if _, err := os.Stat("/proc/net/nf_conntrack"); err != nil {
		t.Skip("no /proc/net/nf_conntrack (nf_conntrack not loaded): cannot observe the connection table")
	}
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		t.Skip("br_netfilter not loaded: bridged container traffic never reaches conntrack here")
	}
	kerneltest.NsRun(t, l.router, "sh", "-c", "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables")
	o := l.opts(false)
	o.OnlyWhenNeeded = true
	ensure := func() string {
		t.Helper()
		if err := errors.Join(Ensure(o), EnsureNoTrack(o, 0)); err != nil {
			t.Fatal(err)
		}
		p1, err1 := Check(o)
		p2, err2 := CheckNoTrack(o, 0)
		if err := errors.Join(err1, err2); err != nil || len(p1)+len(p2) != 0 {
			t.Fatalf("Check = %q %q, %v", p1, p2, err)
		}
		return iptablesSave(t, l.router, "iptables-save")
	}

	kerneltest.NsRun(t, l.router, "iptables", "-t", "nat", "-N", "DOCKER")
	if s := ensure(); !strings.Contains(s, "*nat") || strings.Contains(s, NoTrackChain) {
		t.Fatalf("a nat table of user chains only: want it listed and no notrack chain:\n%s", s)
	}

	kerneltest.NsRun(t, l.router, "nft", "add table inet fmwfw; "+
		"add chain inet fmwfw input { type filter hook input priority 0; policy accept; }; "+
		"add rule inet fmwfw input ct state established,related accept")
	t.Cleanup(func() { kerneltest.NsRun(t, l.router, "sh", "-c", "nft delete table inet fmwfw 2>/dev/null || true") })
	var logged strings.Builder
	o.Logger = hclog.New(&hclog.LoggerOptions{Output: &logged, Level: hclog.Info})
	if s := ensure(); !strings.Contains(s, "-A PREROUTING -j "+NoTrackChain) {
		t.Fatalf("beside a native ct rule: no notrack chain:\n%s", s)
	}
	if !strings.Contains(logged.String(), `tracking="conntrack rule in inet fmwfw input"`) {
		t.Errorf("the update's log does not name the conntrack user:\n%s", logged.String())
	}
	o.Logger = l.log
	if !canPing(l.c1, c2Addr) || conntrackHas(t, l.router, c1Addr, c2Addr) {
		t.Fatal("cluster traffic tracked (or lost) with the notrack chains in place")
	}
	if err := RemoveNoTrack(o); err != nil {
		t.Fatal(err)
	}
	if !canPing(l.c1, c2Addr) || !conntrackHas(t, l.router, c1Addr, c2Addr) {
		t.Fatal("without the notrack chains cluster traffic is not tracked either: the test shows nothing")
	}

	if s := ensure(); !strings.Contains(s, "-A PREROUTING -j "+NoTrackChain) {
		t.Fatalf("notrack chain not back after RemoveNoTrack:\n%s", s)
	}
	kerneltest.NsRun(t, l.router, "nft", "delete table inet fmwfw")
	if s := ensure(); strings.Contains(s, NoTrackChain) {
		t.Fatalf("native table gone: notrack chain kept:\n%s", s)
	}
}
