package flat

import (
	"context"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// After the switch-over, drift on our objects (STP turned on, the bridge's
// MAC changed, the NIC and a container port taken off the bridge) is
// repaired; an address the administrator removed is reported, not
// restored; a second check repairs nothing.
func TestCheckDriftRepairsOursReportsTheHosts(t *testing.T) {
	l := newLab(t)
	o := l.options(t)
	ctx := context.Background()
	if _, err := SwitchOver(ctx, o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Restore(context.Background(), o) })
	if d, err := CheckDrift(ctx, o, nil); err != nil || len(d.Repaired) != 0 || len(d.Host) != 0 {
		t.Fatalf("right after the switch-over: %+v %v", d, err)
	}
	nicMAC := linkMAC(t, l.host, "eth0")
	run := func(args ...string) { kerneltest.Run(t, "ip", append([]string{"-n", l.host}, args...)...) }
	run("link", "add", "fmdrift0", "type", "veth", "peer", "name", "fmdrift1")
	run("link", "set", "fmdrift0", "master", "fmfbr0")
	run("link", "set", "fmdrift0", "nomaster")
	run("link", "set", "fmfbr0", "type", "bridge", "stp_state", "1")
	run("link", "set", "fmfbr0", "address", "02:00:00:00:77:77")
	run("addr", "del", "10.77.0.11/24", "dev", "fmfbr0")

	d, err := CheckDrift(ctx, o, []string{"fmdrift0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Repaired) < 3 {
		t.Fatalf("repaired %q, want stp, mac and the container port", d.Repaired)
	}
	if len(d.Host) != 1 || !strings.Contains(d.Host[0], "10.77.0.11/24") {
		t.Fatalf("host drift %q, want the removed address", d.Host)
	}
	s, err := TakeSnapshot(l.hostNS, "eth0", "fmfbr0")
	if err != nil {
		t.Fatal(err)
	}
	if s.Bridge.STP || s.Bridge.ForwardDelay != 0 || s.Bridge.Link.MAC != nicMAC {
		t.Fatalf("bridge after repair: stp %v delay %d mac %s (want off, 0, %s)", s.Bridge.STP, s.Bridge.ForwardDelay, s.Bridge.Link.MAC, nicMAC)
	}
	if !strings.Contains(strings.Join(s.Bridge.Ports, " "), "fmdrift0") {
		t.Fatalf("container port not back on the bridge: ports %v", s.Bridge.Ports)
	}
	for _, a := range s.Bridge.Addrs {
		if a.Prefix.String() == "10.77.0.11/24" {
			t.Fatal("the host's removed address was put back: not ours to restore")
		}
	}
	d, err = CheckDrift(ctx, o, []string{"fmdrift0"})
	if err != nil || len(d.Repaired) != 0 || len(d.Host) != 1 {
		t.Fatalf("second check: %+v %v, want nothing repaired and the same report", d, err)
	}
	l.pingsOK(t)
}
