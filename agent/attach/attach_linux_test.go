package attach

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

const prefix = "fmk"

// hostWithBridge makes a "host" namespace with bridge fmkbr (10.213.0.1/26,
// mtu 1450) and returns its name.
func hostWithBridge(t *testing.T) string {
	t.Helper()
	name := kerneltest.Netns(t, prefix)
	ns, err := kernel.OpenNS(kerneltest.NetnsPath(name))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if _, _, err := kernel.EnsureBridge(ns, kernel.BridgeSpec{Name: "fmkbr", MTU: 1450}); err != nil {
		t.Fatal(err)
	}
	kerneltest.Run(t, "ip", "-n", name, "addr", "add", "10.213.0.1/26", "dev", "fmkbr")
	return name
}

func specFor(host, ctr string) Spec {
	return Spec{HostNetns: kerneltest.NetnsPath(host), Netns: ctr, ContainerID: "c-" + ctr, Name: "web",
		Bridge: "fmkbr", Address: netip.MustParsePrefix("10.213.0.5/26"), Gateway: netip.MustParseAddr("10.213.0.1")}
}

// strayVeths lists host links that look like attachments.
func strayVeths(t *testing.T, host string) []string {
	t.Helper()
	ns, err := kernel.OpenNS(kerneltest.NetnsPath(host))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	links, err := ns.H.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "fm") && l.Type() == "veth" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

func TestRootAttachIdempotent(t *testing.T) {
	kerneltest.RequireRoot(t)
	ctx := context.Background()
	host := hostWithBridge(t)
	ctr := kerneltest.Netns(t, prefix)
	kerneltest.Run(t, "ip", "-n", ctr, "link", "set", "lo", "down")
	spec := specFor(host, ctr)
	res, err := Attach(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if res.HostIf != HostIfName(spec.ContainerID, "eth0") || res.IfName != "eth0" || res.MTU != 1450 ||
		res.Netns != kerneltest.NetnsPath(ctr) || len(res.MAC) != 6 || res.Name != "web" {
		t.Fatalf("result %+v", res)
	}
	out := kerneltest.Run(t, "ip", "-n", ctr, "addr", "show", "eth0")
	if !strings.Contains(out, "inet 10.213.0.5/26") || !strings.Contains(out, "mtu 1450") || !strings.Contains(out, "state UP") {
		t.Fatalf("container eth0:\n%s", out)
	}
	if out := kerneltest.Run(t, "ip", "-n", ctr, "route", "show", "default"); !strings.Contains(out, "default via 10.213.0.1 dev eth0") {
		t.Fatalf("default route: %q", out)
	}
	if out := kerneltest.Run(t, "ip", "-n", ctr, "link", "show", "lo"); !strings.Contains(out, "UP") {
		t.Fatalf("lo not up: %q", out)
	}
	kerneltest.NsRun(t, ctr, "ping", "-c1", "-W2", "10.213.0.1")

	again, err := Attach(ctx, spec)
	if err != nil || !reflect.DeepEqual(again, res) {
		t.Fatalf("second attach: %+v %v, want %+v", again, err, res)
	}
	// Break things by hand; a re-attach repairs them.
	kerneltest.Run(t, "ip", "-n", ctr, "route", "del", "default")
	kerneltest.Run(t, "ip", "-n", ctr, "link", "set", "eth0", "mtu", "1300")
	kerneltest.Run(t, "ip", "-n", host, "link", "set", res.HostIf, "nomaster")
	if again, err = Attach(ctx, spec); err != nil || !reflect.DeepEqual(again, res) {
		t.Fatalf("repairing attach: %+v %v", again, err)
	}
	if out := kerneltest.Run(t, "ip", "-n", ctr, "route", "show", "default"); !strings.Contains(out, "via 10.213.0.1") {
		t.Fatalf("default route not restored: %q", out)
	}
	kerneltest.NsRun(t, ctr, "ping", "-c1", "-W2", "10.213.0.1")
	// A new address for the same container replaces the old one.
	spec.Address = netip.MustParsePrefix("10.213.0.6/26")
	if _, err := Attach(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.Run(t, "ip", "-n", ctr, "addr", "show", "eth0"); strings.Contains(out, "10.213.0.5/") || !strings.Contains(out, "10.213.0.6/26") {
		t.Fatalf("address not replaced:\n%s", out)
	}

	list, err := List(ctx, kerneltest.NetnsPath(host), "fmkbr")
	if err != nil || len(list) != 1 || list[0].ContainerID != spec.ContainerID || list[0].IfName != "eth0" || list[0].HostIf != res.HostIf ||
		!list[0].Up || list[0].Bridge != "fmkbr" || list[0].MTU != 1450 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if other, _ := List(ctx, kerneltest.NetnsPath(host), "fmkother"); len(other) != 0 {
		t.Fatalf("list on another bridge: %+v", other)
	}
	ds := DetachSpec{HostNetns: kerneltest.NetnsPath(host), ContainerID: spec.ContainerID}
	if err := Detach(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if err := Detach(ctx, ds); err != nil {
		t.Fatalf("second detach: %v", err)
	}
	if s := strayVeths(t, host); len(s) != 0 {
		t.Fatalf("veths after detach: %v", s)
	}
	if out := kerneltest.Run(t, "ip", "-n", ctr, "link", "show"); strings.Contains(out, "eth0") {
		t.Fatalf("container still has eth0:\n%s", out)
	}
}

func TestRootAttachBadInput(t *testing.T) {
	kerneltest.RequireRoot(t)
	ctx := context.Background()
	host := hostWithBridge(t)
	ctr := kerneltest.Netns(t, prefix)
	kerneltest.Run(t, "ip", "-n", ctr, "link", "add", "eth1", "type", "veth", "peer", "name", "fmkx")
	cases := []struct {
		name string
		mod  func(*Spec)
		msg  string
	}{
		{"missing netns", func(s *Spec) { s.Netns = "fmknosuchns" }, `network namespace "fmknosuchns" not found (looked at /run/netns/fmknosuchns)`},
		{"ifname too long", func(s *Spec) { s.IfName = "container-eth-zero" }, "Linux allows at most 15"},
		{"address on the bridge", func(s *Spec) { s.Address, s.Gateway = netip.MustParsePrefix("10.213.0.1/26"), netip.Addr{} }, "already assigned to bridge fmkbr"},
		{"ifname taken", func(s *Spec) { s.IfName = "eth1" }, "interface eth1 already exists"},
		{"missing bridge", func(s *Spec) { s.Bridge = "fmknobr" }, "bridge fmknobr not found"},
		{"ipv6 disabled in the container", func(s *Spec) {
			s.Address, s.Gateway = netip.MustParsePrefix("fd13::5/64"), netip.MustParseAddr("fd13::1")
		}, "configuring eth0"},
	}
	ctrNS, err := kernel.OpenNS(ctr)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrNS.Close()
	// Makes the address step fail after the veth exists: rollback must remove it.
	for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		if err := ctrNS.SetSysctl(k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		spec := specFor(host, ctr)
		c.mod(&spec)
		_, err := Attach(ctx, spec)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.msg)
		}
		if s := strayVeths(t, host); len(s) != 0 {
			t.Errorf("%s: stray veths %v", c.name, s)
		}
		if out := kerneltest.Run(t, "ip", "-n", ctr, "link", "show"); strings.Contains(out, "eth0") {
			t.Errorf("%s: container kept eth0:\n%s", c.name, out)
		}
	}
}

func TestRootVanishedNetns(t *testing.T) {
	kerneltest.RequireRoot(t)
	ctx := context.Background()
	host := hostWithBridge(t)
	ctr := kerneltest.Netns(t, prefix)
	if _, err := Attach(ctx, specFor(host, ctr)); err != nil {
		t.Fatal(err)
	}
	if l, _ := List(ctx, kerneltest.NetnsPath(host), ""); len(l) != 1 {
		t.Fatalf("list before: %+v", l)
	}
	kerneltest.Run(t, "ip", "netns", "del", ctr)
	kerneltest.Eventually(t, 5*time.Second, "the kernel to destroy the veth of a vanished netns", func() bool {
		l, err := List(ctx, kerneltest.NetnsPath(host), "")
		return err == nil && len(l) == 0
	})
}

func TestRootAttachGratuitousARP(t *testing.T) {
	kerneltest.RequireRoot(t)
	host := hostWithBridge(t)
	ctr := kerneltest.Netns(t, prefix)
	l, err := kernel.ListenARP(kerneltest.NetnsPath(host), "fmkbr")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	spec := specFor(host, ctr)
	spec.GratuitousARP = true
	res, err := Attach(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		p, err := l.Read(time.Until(deadline))
		if err != nil {
			t.Fatal(err)
		}
		if p.SenderIP == spec.Address.Addr() && p.TargetIP == spec.Address.Addr() && p.SenderHardwareAddr.String() == res.MAC.String() {
			return
		}
	}
	t.Fatal("no gratuitous arp seen on the bridge")
}
