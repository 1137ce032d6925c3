package flat

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

func TestARPFrameRoundTrip(t *testing.T) {
	ours := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	p := arpPacket{Op: arpRequest, SenderMAC: ours, SenderIP: netip.MustParseAddr("192.0.2.1"),
		TargetMAC: make(net.HardwareAddr, 6), TargetIP: netip.MustParseAddr("192.0.2.9")}
	f := p.frame(broadcastMAC)
	if len(f) != minFrame {
		t.Fatalf("frame length %d, want %d", len(f), minFrame)
	}
	if !bytes.Equal(f[0:6], broadcastMAC) || !bytes.Equal(f[6:12], ours) || f[12] != 0x08 || f[13] != 0x06 {
		t.Fatalf("bad ethernet header % x", f[:14])
	}
	// Fixed bytes of an Ethernet/IPv4 ARP request (RFC 826).
	if want := []byte{0, 1, 8, 0, 6, 4, 0, 1}; !bytes.Equal(f[14:22], want) {
		t.Fatalf("arp header % x, want % x", f[14:22], want)
	}
	got, ok := parseARPFrame(f)
	if !ok || got.Op != p.Op || got.SenderIP != p.SenderIP || got.TargetIP != p.TargetIP || !macEqual(got.SenderMAC, ours) {
		t.Fatalf("parsed %+v ok=%v", got, ok)
	}
	if _, ok := parseARPFrame(f[:30]); ok {
		t.Error("short frame parsed")
	}
	f[13] = 0x00 // IPv4 ethertype
	if _, ok := parseARPFrame(f); ok {
		t.Error("non-ARP frame parsed")
	}
}

func TestProbeConflict(t *testing.T) {
	ours := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	addr := netip.MustParseAddr("192.0.2.9")
	zero := netip.IPv4Unspecified()
	for _, c := range []struct {
		name string
		p    arpPacket
		want bool
	}{
		{"reply from holder", arpPacket{Op: arpReply, SenderMAC: other, SenderIP: addr}, true},
		{"holder asks someone", arpPacket{Op: arpRequest, SenderMAC: other, SenderIP: addr, TargetIP: netip.MustParseAddr("192.0.2.1")}, true},
		{"other host probes same address", arpPacket{Op: arpRequest, SenderMAC: other, SenderIP: zero, TargetIP: addr}, true},
		{"our own probe", arpPacket{Op: arpRequest, SenderMAC: ours, SenderIP: zero, TargetIP: addr}, false},
		{"unrelated request", arpPacket{Op: arpRequest, SenderMAC: other, SenderIP: netip.MustParseAddr("192.0.2.5"), TargetIP: addr}, false},
		{"probe for another address", arpPacket{Op: arpRequest, SenderMAC: other, SenderIP: zero, TargetIP: netip.MustParseAddr("192.0.2.8")}, false},
	} {
		if got := probeConflict(c.p, addr, ours); got != c.want {
			t.Errorf("%s: conflict = %v, want %v", c.name, got, c.want)
		}
	}
	if !isReplyFrom(arpPacket{Op: arpReply, SenderMAC: other, SenderIP: addr}, addr, ours) {
		t.Error("reply not recognised")
	}
	if isReplyFrom(arpPacket{Op: arpRequest, SenderMAC: other, SenderIP: addr}, addr, ours) {
		t.Error("request taken for a reply")
	}
}
