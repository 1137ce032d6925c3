package attach

import (
	"context"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// TestRootCheckFindsDrift breaks a real attachment one way at a time and
// checks that Check names each break, and that a re-attach (ADD again)
// makes Check clean again.
func TestRootCheckFindsDrift(t *testing.T) {
	kerneltest.RequireRoot(t)
	ctx := context.Background()
	host := hostWithBridge(t)
	ctr := kerneltest.Netns(t, prefix)
	spec := specFor(host, ctr)
	res, err := Attach(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Check(ctx, spec)
	if err != nil || !rep.OK() {
		t.Fatalf("fresh attachment: %+v %v", rep, err)
	}
	if rep.HostIf != res.HostIf || len(rep.HostMAC) != 6 || rep.MAC.String() != res.MAC.String() || rep.MTU != 1450 {
		t.Fatalf("report %+v, attach result %+v", rep, res)
	}
	breaks := []struct {
		name  string
		cmd   []string
		kind  DriftKind
		words string
	}{
		{"default route deleted", []string{"-n", ctr, "route", "del", "default"}, DriftRouteMissing, "route 0.0.0.0/0 via 10.213.0.1"},
		{"address deleted", []string{"-n", ctr, "addr", "del", "10.213.0.5/26", "dev", "eth0"}, DriftAddressWrong, "lacks its address 10.213.0.5/26"},
		{"mtu changed", []string{"-n", ctr, "link", "set", "eth0", "mtu", "1300"}, DriftInterfaceWrong, "has mtu 1300, flatmesh set 1450"},
		{"off the bridge", []string{"-n", host, "link", "set", res.HostIf, "nomaster"}, DriftInterfaceWrong, "is not on bridge fmkbr"},
		{"container end down", []string{"-n", ctr, "link", "set", "eth0", "down"}, DriftInterfaceWrong, "is down"},
		{"container end deleted", []string{"-n", ctr, "link", "del", "eth0"}, DriftInterfaceMissing, "is missing"},
	}
	for _, b := range breaks {
		kerneltest.Run(t, "ip", b.cmd...)
		rep, err := Check(ctx, spec)
		if err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		if len(rep.Drift) == 0 || rep.Drift[0].Kind != b.kind || !strings.Contains(rep.Drift[0].Detail, b.words) {
			t.Errorf("%s: drift %+v, want %s containing %q", b.name, rep.Drift, b.kind, b.words)
		}
		if _, err := Attach(ctx, spec); err != nil {
			t.Fatalf("%s: re-attach: %v", b.name, err)
		}
		if rep, err := Check(ctx, spec); err != nil || !rep.OK() {
			t.Fatalf("%s: after re-attach: %+v %v", b.name, rep, err)
		}
	}
	// The namespace vanishes: the kernel destroys the pair.
	kerneltest.Run(t, "ip", "netns", "del", ctr)
	rep, err = Check(ctx, spec)
	if err != nil || len(rep.Drift) != 1 || rep.Drift[0].Kind != DriftInterfaceMissing {
		t.Fatalf("after the namespace vanished: %+v %v", rep, err)
	}
}
