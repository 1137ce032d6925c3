package attach

import (
	"context"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

func TestRootPreparePeer(t *testing.T) {
	kerneltest.RequireRoot(t)
	ctx := context.Background()
	host := hostWithBridge(t)
	spec := PeerSpec{HostNetns: kerneltest.NetnsPath(host), ContainerID: "docker:ep1", Bridge: "fmkbr"}
	res, err := PreparePeer(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if res.HostIf != HostIfName("docker:ep1", "eth0") || res.PeerIf != PeerIfName("docker:ep1", "eth0") || res.MTU != 1450 || len(res.MAC) != 6 {
		t.Fatalf("result %+v", res)
	}
	out := kerneltest.Run(t, "ip", "-n", host, "-d", "link", "show", res.HostIf)
	if !strings.Contains(out, "master fmkbr") || !strings.Contains(out, "mtu 1450") || !strings.Contains(out, "alias flatmesh:docker:ep1:eth0") {
		t.Fatalf("host end:\n%s", out)
	}
	if out := kerneltest.Run(t, "ip", "-n", host, "link", "show", res.PeerIf); !strings.Contains(out, "mtu 1450") {
		t.Fatalf("peer end:\n%s", out)
	}
	again, err := PreparePeer(ctx, spec)
	if err != nil || again.HostIf != res.HostIf || again.MAC.String() != res.MAC.String() {
		t.Fatalf("second call: %+v %v (want the same pair adopted)", again, err)
	}
	list, err := List(ctx, kerneltest.NetnsPath(host), "fmkbr")
	if err != nil || len(list) != 1 || list[0].ContainerID != "docker:ep1" {
		t.Fatalf("list %+v %v", list, err)
	}
	// The runtime moved the peer away: the next call makes a fresh pair.
	ctr := kerneltest.Netns(t, prefix)
	kerneltest.Run(t, "ip", "-n", host, "link", "set", res.PeerIf, "netns", ctr)
	fresh, err := PreparePeer(ctx, spec)
	if err != nil || fresh.MAC.String() == res.MAC.String() {
		t.Fatalf("after the move: %+v %v (want a new pair)", fresh, err)
	}
	if err := Detach(ctx, DetachSpec{HostNetns: kerneltest.NetnsPath(host), ContainerID: "docker:ep1"}); err != nil {
		t.Fatal(err)
	}
	if s := strayVeths(t, host); len(s) != 0 {
		t.Fatalf("left behind: %v", s)
	}
	if _, err := PreparePeer(ctx, PeerSpec{HostNetns: kerneltest.NetnsPath(host), ContainerID: "x", Bridge: "nobr"}); err == nil {
		t.Fatal("a missing bridge was accepted")
	}
}
