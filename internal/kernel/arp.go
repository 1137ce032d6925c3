package kernel

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// ARP operation codes.
const (
	ARPRequest = 1
	ARPReply   = 2
)

// ARP is an Ethernet/IPv4 ARP packet (RFC 826), the 28 bytes after the
// Ethernet header.
type ARP struct {
	Op        uint16
	SenderMAC MAC
	SenderIP  netip.Addr
	TargetMAC MAC
	TargetIP  netip.Addr
}

// arpLen is the size of an Ethernet/IPv4 ARP packet.
const arpLen = 28

// Announcement is the gratuitous ARP of RFC 5227 section 2.3: a request
// whose sender and target address are both ip, target MAC zero.
func Announcement(mac MAC, ip netip.Addr) ARP {
	return ARP{Op: ARPRequest, SenderMAC: mac, SenderIP: ip, TargetIP: ip}
}

// Marshal encodes the packet; both addresses must be IPv4.
func (p ARP) Marshal() ([]byte, error) {
	s, t := p.SenderIP.Unmap(), p.TargetIP.Unmap()
	if !s.Is4() || !t.Is4() {
		return nil, fmt.Errorf("arp needs IPv4 addresses, got %s and %s", p.SenderIP, p.TargetIP)
	}
	b := make([]byte, arpLen)
	binary.BigEndian.PutUint16(b[0:], 1)      // hardware type: Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // protocol type: IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], p.Op)
	copy(b[8:14], p.SenderMAC[:])
	s4 := s.As4()
	copy(b[14:18], s4[:])
	copy(b[18:24], p.TargetMAC[:])
	t4 := t.As4()
	copy(b[24:28], t4[:])
	return b, nil
}

// ParseARP decodes an Ethernet/IPv4 ARP packet.
func ParseARP(b []byte) (ARP, error) {
	if len(b) < arpLen {
		return ARP{}, fmt.Errorf("arp packet is %d bytes, want %d", len(b), arpLen)
	}
	if binary.BigEndian.Uint16(b[0:]) != 1 || binary.BigEndian.Uint16(b[2:]) != 0x0800 || b[4] != 6 || b[5] != 4 {
		return ARP{}, fmt.Errorf("not an Ethernet/IPv4 arp packet")
	}
	var p ARP
	p.Op = binary.BigEndian.Uint16(b[6:])
	copy(p.SenderMAC[:], b[8:14])
	p.SenderIP = netip.AddrFrom4([4]byte(b[14:18]))
	copy(p.TargetMAC[:], b[18:24])
	p.TargetIP = netip.AddrFrom4([4]byte(b[24:28]))
	return p, nil
}
