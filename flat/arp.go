package flat

import (
	"encoding/binary"
	"net"
	"net/netip"
	"time"
)

// ARP over Ethernet for IPv4 (RFC 826), as flat mode uses it: probing an
// address before handing it out (RFC 5227), announcing it afterwards, and
// checking that the gateway answers after a switch-over.

const (
	etherTypeARP  = 0x0806
	etherTypeIPv4 = 0x0800
	arpHWEthernet = 1
	arpRequest    = 1
	arpReply      = 2
	etherHdrLen   = 14
	arpLen        = 28
	// minFrame is the shortest Ethernet frame without FCS; shorter ones
	// are padded.
	minFrame = 60
)

// DefaultProbeTimeout is how long Probe listens when ProbeOptions.Timeout is
// 0. RFC 5227 asks for about 7 s (3 probes 1-2 s apart, then 2 s); flat mode
// runs a shorter version of the same exchange so container start stays fast.
const DefaultProbeTimeout = time.Second

// DefaultProbes is the number of probes Probe sends when Count is 0.
const DefaultProbes = 3

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// arpPacket is an Ethernet/IPv4 ARP packet.
type arpPacket struct {
	Op        uint16
	SenderMAC net.HardwareAddr
	SenderIP  netip.Addr
	TargetMAC net.HardwareAddr
	TargetIP  netip.Addr
}

// frame encodes p into an Ethernet frame from p.SenderMAC to dst, padded to
// the minimum frame size.
func (p arpPacket) frame(dst net.HardwareAddr) []byte {
	b := make([]byte, minFrame)
	copy(b[0:6], dst)
	copy(b[6:12], p.SenderMAC)
	binary.BigEndian.PutUint16(b[12:14], etherTypeARP)
	a := b[etherHdrLen:]
	binary.BigEndian.PutUint16(a[0:2], arpHWEthernet)
	binary.BigEndian.PutUint16(a[2:4], etherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], p.Op)
	copy(a[8:14], p.SenderMAC)
	ip4(a[14:18], p.SenderIP)
	copy(a[18:24], p.TargetMAC)
	ip4(a[24:28], p.TargetIP)
	return b
}

func ip4(dst []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(dst, v[:])
	}
}

// parseARPFrame decodes an Ethernet frame holding an Ethernet/IPv4 ARP
// packet; ok is false for anything else.
func parseARPFrame(b []byte) (p arpPacket, ok bool) {
	if len(b) < etherHdrLen+arpLen || binary.BigEndian.Uint16(b[12:14]) != etherTypeARP {
		return arpPacket{}, false
	}
	a := b[etherHdrLen:]
	if binary.BigEndian.Uint16(a[0:2]) != arpHWEthernet || binary.BigEndian.Uint16(a[2:4]) != etherTypeIPv4 ||
		a[4] != 6 || a[5] != 4 {
		return arpPacket{}, false
	}
	p.Op = binary.BigEndian.Uint16(a[6:8])
	p.SenderMAC = net.HardwareAddr(append([]byte(nil), a[8:14]...))
	p.SenderIP = netip.AddrFrom4([4]byte(a[14:18]))
	p.TargetMAC = net.HardwareAddr(append([]byte(nil), a[18:24]...))
	p.TargetIP = netip.AddrFrom4([4]byte(a[24:28]))
	return p, true
}

// probeConflict reports whether p, seen while probing addr from ourMAC,
// shows that someone else uses or claims addr (RFC 5227 section 2.1.1): a
// packet whose sender address is addr, or another host's probe for addr.
func probeConflict(p arpPacket, addr netip.Addr, ourMAC net.HardwareAddr) bool {
	if macEqual(p.SenderMAC, ourMAC) {
		return false
	}
	if p.SenderIP == addr {
		return true
	}
	return p.Op == arpRequest && p.SenderIP == netip.IPv4Unspecified() && p.TargetIP == addr
}

// isReplyFrom reports whether p answers an ARP request for addr.
func isReplyFrom(p arpPacket, addr netip.Addr, ourMAC net.HardwareAddr) bool {
	return p.Op == arpReply && p.SenderIP == addr && !macEqual(p.SenderMAC, ourMAC)
}

func macEqual(a, b net.HardwareAddr) bool { return string(a) == string(b) }
