package attach

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// DetachMany removes many pairs in one kernel batch, answers per spec (an
// attachment already gone is fine, a host end of another identity is
// refused and left alone) and leaves nothing behind.
func TestRootDetachMany(t *testing.T) {
	kerneltest.RequireRoot(t)
	ctx := context.Background()
	host := hostWithBridge(t)
	hostPath := kerneltest.NetnsPath(host)
	var specs []DetachSpec
	for i := range 5 {
		ctr := kerneltest.Netns(t, prefix)
		spec := specFor(host, ctr)
		spec.Address = netip.MustParsePrefix(fmt.Sprintf("10.213.0.%d/26", 10+i))
		if _, err := Attach(ctx, spec); err != nil {
			t.Fatal(err)
		}
		specs = append(specs, DetachSpec{ContainerID: spec.ContainerID})
	}
	// A host interface named like an attachment but carrying another alias.
	foreign := DetachSpec{ContainerID: "c-foreign"}
	kerneltest.Run(t, "ip", "-n", host, "link", "add", HostIfName(foreign.ContainerID, "eth0"), "type", "veth", "peer", "name", "xpeer")
	kerneltest.Run(t, "ip", "-n", host, "link", "set", HostIfName(foreign.ContainerID, "eth0"), "alias", "someone else's")
	all := append([]DetachSpec{{ContainerID: "c-never-attached"}, foreign}, specs...)
	errs := DetachMany(ctx, hostPath, all)
	if errs[0] != nil {
		t.Fatalf("an attachment already gone: %v", errs[0])
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "leaving it alone") {
		t.Fatalf("a host end of another identity: %v", errs[1])
	}
	for i, err := range errs[2:] {
		if err != nil {
			t.Fatalf("detach %s: %v", specs[i].ContainerID, err)
		}
	}
	left := strayVeths(t, host)
	if len(left) != 1 || left[0] != HostIfName(foreign.ContainerID, "eth0") {
		t.Fatalf("host veths after the batch %v, want only the foreign one", left)
	}
	for _, err := range DetachMany(ctx, hostPath, specs) { // idempotent
		if err != nil {
			t.Fatal(err)
		}
	}
}
