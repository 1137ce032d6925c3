package attach

import (
	"context"
	"errors"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

func linkIndex(t *testing.T, netns, name string) int {
	t.Helper()
	ns, err := kernel.OpenNS(netns)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	l, err := ns.H.LinkByName(name)
	if err != nil {
		t.Fatalf("%s in %s: %v", name, netns, err)
	}
	return l.Attrs().Index
}

// An attachment made under a path ID is rekeyed to the namespace identity
// in place: same host end, same container end; Attach, List and Detach of
// the new ID find it; a namespace that does not hold the pair is refused.
func TestRootRekeyInPlace(t *testing.T) {
	kerneltest.RequireRoot(t)
	ctx := context.Background()
	host := hostWithBridge(t)
	hostPath := kerneltest.NetnsPath(host)
	ctr := kerneltest.Netns(t, prefix)
	ctrPath := kerneltest.NetnsPath(ctr)
	spec := specFor(host, ctr)
	spec.ContainerID = ctrPath // the legacy ID: the path
	if _, err := Attach(ctx, spec); err != nil {
		t.Fatal(err)
	}
	legacyName := HostIfName(ctrPath, "eth0")
	hostIdx, ctrIdx := linkIndex(t, hostPath, legacyName), linkIndex(t, ctrPath, "eth0")
	ns, err := kernel.StatNetns(ctrPath)
	if err != nil {
		t.Fatal(err)
	}
	newID := ns.ID.String()
	other := kerneltest.Netns(t, prefix)
	err = Rekey(ctx, RekeySpec{HostNetns: hostPath, OldID: ctrPath, NewID: newID, Netns: kerneltest.NetnsPath(other)})
	if err == nil {
		t.Fatal("rekey accepted a namespace that does not hold the pair")
	}
	if err := Rekey(ctx, RekeySpec{HostNetns: hostPath, OldID: "/run/netns/none", NewID: newID, Netns: ctrPath}); !errors.Is(err, ErrNoAttachment) {
		t.Fatalf("rekey of an unknown ID: %v, want ErrNoAttachment", err)
	}
	for range 2 { // idempotent
		if err := Rekey(ctx, RekeySpec{HostNetns: hostPath, OldID: ctrPath, NewID: newID, Netns: ctrPath}); err != nil {
			t.Fatal(err)
		}
	}
	found, err := List(ctx, hostPath, "fmkbr")
	if err != nil || len(found) != 1 || found[0].ContainerID != newID || found[0].HostIf != legacyName || found[0].HostIndex != hostIdx {
		t.Fatalf("list after rekey: %v %+v, want %s on %s", err, found, newID, legacyName)
	}
	spec.ContainerID = newID
	res, err := Attach(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if linkIndex(t, hostPath, HostIfName(newID, "eth0")) != hostIdx || linkIndex(t, ctrPath, "eth0") != ctrIdx {
		t.Fatalf("attach of the new ID replaced the pair (result %+v)", res)
	}
	if veths := strayVeths(t, host); len(veths) != 1 {
		t.Fatalf("host veths %v, want the one pair", veths)
	}
	if _, err := Check(ctx, spec); err != nil {
		t.Fatalf("check of the rekeyed attachment: %v", err)
	}
	if err := Detach(ctx, DetachSpec{HostNetns: hostPath, ContainerID: newID}); err != nil {
		t.Fatal(err)
	}
	if veths := strayVeths(t, host); len(veths) != 0 {
		t.Fatalf("detach left %v", veths)
	}
}
