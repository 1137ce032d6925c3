package overlay

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

func TestRootApplyBridge(t *testing.T) {
	kerneltest.RequireRoot(t)
	name := kerneltest.Netns(t, "fmk")
	ns, err := kernel.OpenNS(kerneltest.NetnsPath(name))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	opts := BridgeOptions{Name: "fmkbr", MTU: 1450, MAC: BridgeMAC(netip.MustParseAddr("198.18.0.1")),
		Blocks: []netip.Prefix{netip.MustParsePrefix("10.213.0.0/26")}}
	b, err := DesiredBridge(opts)
	if err != nil {
		t.Fatal(err)
	}
	changes, plan, err := ApplyBridge(ns, b)
	if err != nil || len(changes) == 0 || plan.Add.Len() != 1 {
		t.Fatalf("first apply: %v %s %v", changes, plan, err)
	}
	if changes, plan, err = ApplyBridge(ns, b); err != nil || len(changes) != 0 || !plan.Empty() {
		t.Fatalf("second apply: %v %s %v", changes, plan, err)
	}
	// The host gives up its block and gets another: add first, then delete.
	opts.Blocks = []netip.Prefix{netip.MustParsePrefix("10.213.0.128/26")}
	b, _ = DesiredBridge(opts)
	if _, plan, err = ApplyBridge(ns, b); err != nil || plan.String() != "add 1 addr, del 1 addr" {
		t.Fatalf("block move: %s %v", plan, err)
	}
	out := kerneltest.Run(t, "ip", "-n", name, "addr", "show", "dev", "fmkbr")
	if !strings.Contains(out, "inet 10.213.0.129/26") || strings.Contains(out, "10.213.0.1/") || !strings.Contains(out, "0e:fc:c6:12:00:01") {
		t.Fatalf("bridge:\n%s", out)
	}
	if err := RemoveBridge(ns, "fmkbr"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveBridge(ns, "fmkbr"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}
