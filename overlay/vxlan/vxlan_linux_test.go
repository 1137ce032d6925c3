package vxlan

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
	"github.com/flatmesh/flatmesh/overlay"
)

// testHost is one "host" of the lab: a namespace with an underlay veth,
// the vxlan plane and one container.
type testHost struct {
	ns     string // namespace name
	h      *kernel.NS
	node   Node
	ctr    string // container namespace name
	ctrIP  netip.Addr
	result attach.Result
}

var testOpts = Options{Device: "fmkvx", Bridge: "fmkbr"}

func newTestHost(t *testing.T, ns, underlay, block string) *testHost {
	t.Helper()
	h, err := kernel.OpenNS(kerneltest.NetnsPath(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := h.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	u := netip.MustParseAddr(underlay)
	return &testHost{ns: ns, h: h, node: Node{Name: ns, Underlay: u, VTEPMAC: VTEPMAC(u), Blocks: []netip.Prefix{netip.MustParsePrefix(block)}}}
}

func (th *testHost) apply(t *testing.T, peers []Node) Result {
	t.Helper()
	link, err := kernel.LinkWithAddr(th.h, th.node.Underlay)
	if err != nil {
		t.Fatal(err)
	}
	opts := testOpts
	if opts.MTU, err = overlay.ResolveMTU(overlay.MTUOptions{Mode: overlay.ModeVXLAN, UnderlayMTU: link.Attrs().MTU}); err != nil {
		t.Fatal(err)
	}
	st, err := Desired(th.node, peers, opts)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Apply(th.h, st)
	if err != nil {
		t.Fatalf("apply on %s: %v", th.ns, err)
	}
	return res
}

func (th *testHost) attachContainer(t *testing.T, hostPart int) {
	t.Helper()
	th.ctr = kerneltest.Netns(t, "fmk")
	blk := th.node.Blocks[0]
	gw, _ := overlay.Gateway(blk)
	th.ctrIP = blk.Addr()
	for range hostPart {
		th.ctrIP = th.ctrIP.Next()
	}
	res, err := attach.Attach(context.Background(), attach.Spec{HostNetns: kerneltest.NetnsPath(th.ns), Netns: th.ctr,
		ContainerID: "ctr-" + th.ctr, Bridge: testOpts.Bridge, Address: netip.PrefixFrom(th.ctrIP, blk.Bits()), Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	th.result = res
}

func ping(ns string, args ...string) error {
	out, err := kerneltest.NsOutput(ns, "ping", append([]string{"-c1", "-W2"}, args...)...)
	if err != nil {
		return fmt.Errorf("ping %v from %s: %v\n%s", args, ns, err, out)
	}
	return nil
}

func twoHosts(t *testing.T) (*testHost, *testHost) {
	t.Helper()
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "ping", "ethtool", "bridge")
	nsA, nsB := kerneltest.Netns(t, "fmk"), kerneltest.Netns(t, "fmk")
	kerneltest.Veth(t, nsA, "fmkul", nsB, "fmkul")
	kerneltest.Run(t, "ip", "-n", nsA, "addr", "add", "198.18.0.1/24", "dev", "fmkul")
	kerneltest.Run(t, "ip", "-n", nsB, "addr", "add", "198.18.0.2/24", "dev", "fmkul")
	a := newTestHost(t, nsA, "198.18.0.1", "10.213.0.0/26")
	b := newTestHost(t, nsB, "198.18.0.2", "10.213.0.64/26")
	for _, x := range []struct{ self, peer *testHost }{{a, b}, {b, a}} {
		if res := x.self.apply(t, []Node{x.peer.node}); res.Empty() {
			t.Fatalf("first apply on %s changed nothing", x.self.ns)
		}
	}
	a.attachContainer(t, 2)
	b.attachContainer(t, 2)
	return a, b
}

func TestRootVXLANAcrossHosts(t *testing.T) {
	a, b := twoHosts(t)
	if a.result.MTU != 1450 {
		t.Fatalf("container mtu %d, want 1450", a.result.MTU)
	}
	for _, c := range []struct{ from, to string }{
		{a.ctr, b.ctrIP.String()}, {b.ctr, a.ctrIP.String()}, // container <-> container
		{a.ns, b.ctrIP.String()}, {b.ns, a.ctrIP.String()}, // host -> remote container
		{a.ctr, "10.213.0.65"}, // container -> remote host's gateway
	} {
		if err := ping(c.from, c.to); err != nil {
			t.Fatal(err)
		}
	}
	// The largest packet the MTU allows passes unfragmented; one byte more does not.
	if err := ping(a.ctr, "-M", "do", "-s", "1422", b.ctrIP.String()); err != nil {
		t.Fatal(err)
	}
	if err := ping(a.ctr, "-M", "do", "-s", "1423", b.ctrIP.String()); err == nil {
		t.Fatal("a 1451-byte packet passed a 1450 mtu with DF set")
	}
	// Second pass: nothing to do.
	if res := a.apply(t, []Node{b.node}); !res.Empty() {
		t.Fatalf("second apply on a: links %v plan %s", res.Links, res.Plan)
	}
	out := kerneltest.NsRun(t, a.ns, "ethtool", "-k", "fmkvx")
	if !strings.Contains(out, "tx-checksumming: off") {
		t.Fatalf("tx checksum offload not off:\n%s", out)
	}
	// A route deleted by hand comes back at the next pass.
	kerneltest.Run(t, "ip", "-n", a.ns, "route", "del", "10.213.0.64/26")
	if err := ping(a.ctr, b.ctrIP.String()); err == nil {
		t.Fatal("ping passed without the route")
	}
	if res := a.apply(t, []Node{b.node}); res.Plan.String() != "add 1 route" || len(res.Links) != 0 {
		t.Fatalf("repair: links %v plan %s", res.Links, res.Plan)
	}
	if err := ping(a.ctr, b.ctrIP.String()); err != nil {
		t.Fatal(err)
	}
}

func TestRootVXLANPeerWithdrawn(t *testing.T) {
	a, b := twoHosts(t)
	if err := ping(a.ctr, b.ctrIP.String()); err != nil {
		t.Fatal(err)
	}
	res := a.apply(t, nil) // b is dead: the agent passes no peers
	if got := res.Plan.String(); got != "del 1 neigh, del 1 fdb, del 1 route" {
		t.Fatalf("withdraw plan %q", got)
	}
	if out := kerneltest.Run(t, "ip", "-n", a.ns, "route", "show", "proto", "95"); strings.TrimSpace(out) != "" {
		t.Fatalf("routes left: %q", out)
	}
	if out := kerneltest.Run(t, "bridge", "-n", a.ns, "fdb", "show", "dev", "fmkvx"); strings.Contains(out, "dst") {
		t.Fatalf("fdb left: %q", out)
	}
	if out := kerneltest.Run(t, "ip", "-n", a.ns, "neigh", "show", "dev", "fmkvx", "nud", "permanent"); strings.TrimSpace(out) != "" {
		t.Fatalf("neighbours left: %q", out)
	}
	if err := ping(a.ctr, b.ctrIP.String()); err == nil {
		t.Fatal("ping passed to a withdrawn peer")
	}
	// It comes back.
	if res := a.apply(t, []Node{b.node}); res.Plan.Add.Len() != 3 {
		t.Fatalf("return plan %s", res.Plan)
	}
	if err := ping(a.ctr, b.ctrIP.String()); err != nil {
		t.Fatal(err)
	}
	if err := Remove(a.h, "fmkvx", "fmkbr"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(a.h, "fmkvx", "fmkbr"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}
