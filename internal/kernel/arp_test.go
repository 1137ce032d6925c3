package kernel

import (
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
)

func TestProbeConflict(t *testing.T) {
	ours := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	addr := netip.MustParseAddr("192.0.2.9")
	zero := netip.IPv4Unspecified()
	pkt := func(op arp.Operation, mac net.HardwareAddr, sender, target netip.Addr) *arp.Packet {
		return &arp.Packet{Operation: op, SenderHardwareAddr: mac, SenderIP: sender, TargetIP: target}
	}
	for _, c := range []struct {
		name string
		p    *arp.Packet
		want bool
	}{
		{"reply from holder", pkt(arp.OperationReply, other, addr, zero), true},
		{"holder asks someone", pkt(arp.OperationRequest, other, addr, netip.MustParseAddr("192.0.2.1")), true},
		{"other host probes same address", pkt(arp.OperationRequest, other, zero, addr), true},
		{"our own probe", pkt(arp.OperationRequest, ours, zero, addr), false},
		{"unrelated request", pkt(arp.OperationRequest, other, netip.MustParseAddr("192.0.2.5"), addr), false},
		{"probe for another address", pkt(arp.OperationRequest, other, zero, netip.MustParseAddr("192.0.2.8")), false},
	} {
		if got := probeConflict(c.p, addr, ours); got != c.want {
			t.Errorf("%s: conflict = %v, want %v", c.name, got, c.want)
		}
	}
	if !isReplyFrom(pkt(arp.OperationReply, other, addr, zero), addr, ours) {
		t.Error("reply not recognised")
	}
	if isReplyFrom(pkt(arp.OperationRequest, other, addr, zero), addr, ours) {
		t.Error("request taken for a reply")
	}
	if isReplyFrom(pkt(arp.OperationReply, ours, addr, zero), addr, ours) {
		t.Error("our own reply taken for an answer")
	}
}

// The frame we send is what RFC 826 says on every host, whatever its byte
// order: the library encodes big-endian fields itself.
func TestARPFrame(t *testing.T) {
	ours := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	p, err := arp.NewPacket(arp.OperationRequest, ours, netip.IPv4Unspecified(), make(net.HardwareAddr, 6), netip.MustParseAddr("192.0.2.9"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := arpFrame(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(f) < 60 {
		t.Fatalf("frame of %d bytes is shorter than the Ethernet minimum", len(f))
	}
	want := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1}
	if string(f[:len(want)]) != string(want) {
		t.Fatalf("frame header % x, want % x", f[:len(want)], want)
	}
	back, ok := parseARPFrame(f)
	if !ok || back.Operation != arp.OperationRequest || back.TargetIP != p.TargetIP || back.SenderIP != p.SenderIP {
		t.Fatalf("parsed %+v ok=%v", back, ok)
	}
	if _, ok := parseARPFrame(f[:30]); ok {
		t.Error("short frame parsed")
	}
	f[13] = 0x00 // IPv4 ethertype
	if _, ok := parseARPFrame(f); ok {
		t.Error("non-ARP frame parsed")
	}
}
