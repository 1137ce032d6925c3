package flat

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// The kernel package's ARP probe and announcement against flat's lab LAN
// (a plain machine, a host, and its bridge after a switch-over).
func TestProbe(t *testing.T) {
	l := newLab(t)
	plainMAC := linkMAC(t, l.plain, "lan0")
	ctx := context.Background()
	inUse, mac, err := kernel.ARPProbe(ctx, kernel.ARPProbeOptions{NetnsPath: l.hostNS, Iface: "eth0", Addr: netip.MustParseAddr(labRouterIP), Timeout: 600 * time.Millisecond})
	if err != nil || !inUse || mac.String() != plainMAC {
		t.Fatalf("probe of the plain machine's address: inUse=%v mac=%s err=%v; want in use by %s", inUse, mac, err, plainMAC)
	}
	start := time.Now()
	inUse, mac, err = kernel.ARPProbe(ctx, kernel.ARPProbeOptions{NetnsPath: l.hostNS, Iface: "eth0", Addr: netip.MustParseAddr("10.77.0.77"), Timeout: 600 * time.Millisecond})
	if err != nil || inUse {
		t.Fatalf("probe of a free address: inUse=%v mac=%s err=%v", inUse, mac, err)
	}
	if took := time.Since(start); took < 600*time.Millisecond || took > 2*time.Second {
		t.Errorf("free-address probe took %s, want about the 600 ms timeout", took)
	}
	// A probe (sender 0.0.0.0) must not make the plain machine learn a
	// neighbour for 0.0.0.0 or for the probed address.
	if n := neigh(t, l.plain, "10.77.0.77"); n != "" {
		t.Errorf("probe created a neighbour entry on the plain machine: %s", n)
	}

	// From the bridge, after a switch-over (how the agent probes).
	if _, err := SwitchOver(ctx, l.options(t)); err != nil {
		t.Fatal(err)
	}
	inUse, _, err = kernel.ARPProbe(ctx, kernel.ARPProbeOptions{NetnsPath: l.hostNS, Iface: "fmfbr0", Addr: netip.MustParseAddr(labRouterIP)})
	if err != nil || !inUse {
		t.Fatalf("probe from the bridge: inUse=%v err=%v", inUse, err)
	}
	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := kernel.ARPProbe(ctx2, kernel.ARPProbeOptions{NetnsPath: l.hostNS, Iface: "fmfbr0", Addr: netip.MustParseAddr("10.77.0.78")}); err == nil {
		t.Error("probe with a cancelled context succeeded")
	}
	if _, _, err := kernel.ARPProbe(ctx, kernel.ARPProbeOptions{NetnsPath: l.hostNS, Iface: "nosuch0", Addr: netip.MustParseAddr("10.77.0.78")}); err == nil ||
		!strings.Contains(err.Error(), "nosuch0") {
		t.Errorf("probe on a missing interface: %v", err)
	}
}

func TestAnnounce(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	// A stale entry with the wrong MAC is corrected (default arp_accept=0).
	kerneltest.Run(t, "ip", "-n", l.plain, "neigh", "add", "10.77.0.70", "lladdr", "02:00:00:00:00:99", "dev", "lan0", "nud", "stale")
	newMAC, _ := net.ParseMAC("02:00:00:00:00:70")
	if err := kernel.ARPAnnounce(ctx, kernel.ARPAnnounceOptions{NetnsPath: l.hostNS, Iface: "eth0", Addr: netip.MustParseAddr("10.77.0.70"), MAC: newMAC}); err != nil {
		t.Fatal(err)
	}
	kerneltest.Eventually(t, 2*time.Second, "the plain machine to learn the announced MAC", func() bool {
		return strings.Contains(neigh(t, l.plain, "10.77.0.70"), "02:00:00:00:00:70")
	})
	// A machine that accepts gratuitous ARP learns a new entry; without a
	// MAC the interface's own is announced.
	kerneltest.NsRun(t, l.plain, "sysctl", "-q", "-w", "net.ipv4.conf.lan0.arp_accept=1")
	if err := kernel.ARPAnnounce(ctx, kernel.ARPAnnounceOptions{NetnsPath: l.hostNS, Iface: "eth0", Addr: netip.MustParseAddr("10.77.0.71"), Count: 1}); err != nil {
		t.Fatal(err)
	}
	hostMAC := linkMAC(t, l.host, "eth0")
	kerneltest.Eventually(t, 2*time.Second, "a new neighbour entry from the announcement", func() bool {
		return strings.Contains(neigh(t, l.plain, "10.77.0.71"), hostMAC)
	})
	t.Logf("plain machine neighbours: %s / %s", neigh(t, l.plain, "10.77.0.70"), neigh(t, l.plain, "10.77.0.71"))
}

func linkMAC(t *testing.T, ns, dev string) string {
	t.Helper()
	out := kerneltest.Run(t, "ip", "-n", ns, "-br", "link", "show", dev)
	f := strings.Fields(out)
	if len(f) < 3 {
		t.Fatalf("cannot read the MAC of %s: %q", dev, out)
	}
	return f[2]
}
