package attach

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// CutOffMany stops all traffic of an attachment at once (real packets),
// leaves the pair in place, down, for List to see, leaves its neighbours
// alone and refuses a host end of another identity; DetachMany then
// removes the pair.
func TestRootCutOffMany(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "ping")
	ctx := context.Background()
	host := hostWithBridge(t)
	hostPath := kerneltest.NetnsPath(host)
	var ctrs []string
	var specs []DetachSpec
	for i, addr := range []string{"10.213.0.10/26", "10.213.0.11/26"} {
		ctr := kerneltest.Netns(t, prefix)
		spec := specFor(host, ctr)
		spec.Address = netip.MustParsePrefix(addr)
		if _, err := Attach(ctx, spec); err != nil {
			t.Fatalf("attach %d: %v", i, err)
		}
		ctrs, specs = append(ctrs, ctr), append(specs, DetachSpec{ContainerID: spec.ContainerID})
	}
	ping := func(ns, to string) error {
		_, err := kerneltest.NsOutput(ns, "ping", "-c", "1", "-W", "1", to)
		return err
	}
	kerneltest.Eventually(t, 5*time.Second, "the two containers reach each other", func() bool {
		return ping(ctrs[0], "10.213.0.11") == nil
	})
	foreign := DetachSpec{ContainerID: "c-foreign"}
	kerneltest.Run(t, "ip", "-n", host, "link", "add", HostIfName(foreign.ContainerID, "eth0"), "type", "veth", "peer", "name", "xpeer")
	kerneltest.Run(t, "ip", "-n", host, "link", "set", HostIfName(foreign.ContainerID, "eth0"), "alias", "someone else's")

	errs := CutOffMany(ctx, hostPath, []DetachSpec{specs[1], {ContainerID: "c-never-attached"}, foreign})
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("cut off: %v, an attachment never made: %v", errs[0], errs[1])
	}
	if errs[2] == nil || !strings.Contains(errs[2].Error(), "leaving it alone") {
		t.Fatalf("a host end of another identity: %v", errs[2])
	}
	if ping(ctrs[0], "10.213.0.11") == nil {
		t.Fatal("the cut-off container still answers its neighbour")
	}
	if ping(ctrs[1], "10.213.0.1") == nil {
		t.Fatal("the cut-off container still reaches the gateway")
	}
	if err := ping(ctrs[0], "10.213.0.1"); err != nil {
		t.Fatalf("its neighbour lost the gateway: %v", err)
	}
	found, err := List(ctx, hostPath, "")
	if err != nil {
		t.Fatal(err)
	}
	up := map[string]bool{}
	for _, f := range found {
		up[f.ContainerID] = f.Up
	}
	if v, ok := up[specs[1].ContainerID]; !ok || v {
		t.Fatalf("after the cut-off List shows %v (present %v), want the pair present and down", v, ok)
	}
	if !up[specs[0].ContainerID] {
		t.Fatal("the neighbour's host end went down")
	}
	for _, err := range DetachMany(ctx, hostPath, specs[1:]) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if left := strayVeths(t, host); slices.Contains(left, HostIfName(specs[1].ContainerID, "eth0")) || len(left) != 2 {
		t.Fatalf("host veths after the delete: %v, want the neighbour's and the foreign one", left)
	}
}
