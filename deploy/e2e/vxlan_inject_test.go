package e2e

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
	"github.com/flatmesh/flatmesh/overlay/vxlan"
)

// TestRootVXLANRefusesNonMembers: a machine on the underlay that is not a
// member builds its own VXLAN device (same VNI, the victim's predictable
// VTEP MAC) and sends UDP to a container with a spoofed container source.
// Nothing arrives: the VXLAN port accepts members' underlay addresses only.
// A member's container still reaches the same listener.
func TestRootVXLANRefusesNonMembers(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 2})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h1, err := l.Host("h1")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := l.AddIdleHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c11, _ := l.Container("c11")
	c21, _ := l.Container("c21")
	ns, err := kernel.OpenNS(lab.NetnsPath(h1.Netns))
	if err != nil {
		t.Fatal(err)
	}
	vx, err := ns.H.LinkByName(vxlan.DefaultDevice)
	ns.Close()
	if err != nil {
		t.Fatal(err)
	}
	vtep := vx.Attrs().HardwareAddr.String()
	s := stranger.Netns
	run := func(args ...string) { kerneltest.Run(t, "ip", append([]string{"-n", s}, args...)...) }
	run("link", "add", "fminj", "type", "vxlan", "id", strconv.Itoa(vxlan.DefaultVNI), "dstport", strconv.Itoa(vxlan.DefaultPort),
		"local", stranger.Underlay.Addr().String(), "nolearning")
	run("addr", "add", "10.213.0.250/32", "dev", "fminj") // a spoofed container source
	run("link", "set", "fminj", "up")
	run("route", "add", c11.IP.Addr().String()+"/32", "dev", "fminj")
	run("neigh", "add", c11.IP.Addr().String(), "lladdr", vtep, "dev", "fminj", "nud", "permanent")
	kerneltest.Run(t, "bridge", "-n", s, "fdb", "append", vtep, "dev", "fminj", "dst", h1.Underlay.Addr().String())

	var conn *net.UDPConn
	if err := kernel.InNetns(lab.NetnsPath(c11.Netns), func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 5999})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	send := func(from string) {
		err := kernel.InNetns(lab.NetnsPath(from), func() error {
			c, err := net.Dial("udp4", netip.AddrPortFrom(c11.IP.Addr(), 5999).String())
			if err != nil {
				return err
			}
			defer c.Close()
			for range 5 {
				if _, err := c.Write([]byte("hello from " + from)); err != nil {
					return err
				}
				time.Sleep(20 * time.Millisecond)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("sending from %s: %v", from, err)
		}
	}
	received := func() []string {
		var got []string
		buf := make([]byte, 256)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return got
			}
			got = append(got, string(buf[:n]))
		}
	}
	send(s)
	if got := received(); len(got) > 0 {
		t.Fatalf("a non-member's injected VXLAN frames reached container c11: %q", got)
	}
	if listing, drops := tunnelPortDrops(t, h1.Netns, 4789); drops == 0 {
		t.Fatalf("no packet counted by the DROP rule of the VXLAN port:\n%s", listing)
	}
	send(c21.Netns)
	if got := received(); len(got) == 0 {
		t.Fatal("a member's container does not reach c11 (the listener or the overlay is broken)")
	}
}
