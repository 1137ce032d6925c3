package kernel

import (
	"bytes"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
)

// ARP over Ethernet for IPv4 (RFC 826, RFC 5227), as flatmesh uses it:
// probing an address before handing it out, announcing it once a container
// has it, and resolving the gateway after a flat switch-over. Packets are
// encoded by github.com/mdlayher/arp and sent on github.com/mdlayher/packet
// sockets (arp_linux.go); the decisions below are pure.

// DefaultProbeTimeout is how long ARPProbe listens when the timeout is 0.
// RFC 5227 asks for about 7 s (3 probes 1-2 s apart, then 2 s); flatmesh
// runs a shorter version of the same exchange so container start stays fast.
const DefaultProbeTimeout = time.Second

// DefaultProbes is the number of probes ARPProbe sends when Count is 0.
const DefaultProbes = 3

// probeConflict reports whether p, seen while probing addr from ourMAC,
// shows that someone else uses or claims addr (RFC 5227 section 2.1.1): a
// packet whose sender address is addr, or another host's probe for addr.
func probeConflict(p *arp.Packet, addr netip.Addr, ourMAC net.HardwareAddr) bool {
	if bytes.Equal(p.SenderHardwareAddr, ourMAC) {
		return false
	}
	if p.SenderIP == addr {
		return true
	}
	return p.Operation == arp.OperationRequest && p.SenderIP == netip.IPv4Unspecified() && p.TargetIP == addr
}

// isReplyFrom reports whether p answers an ARP request for addr.
func isReplyFrom(p *arp.Packet, addr netip.Addr, ourMAC net.HardwareAddr) bool {
	return p.Operation == arp.OperationReply && p.SenderIP == addr && !bytes.Equal(p.SenderHardwareAddr, ourMAC)
}
