package doctor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// measureSkew sends an ICMP timestamp request to addr (answered by the
// peer's kernel, no agent involved) and returns their clock minus ours.
// Needs a raw socket (root).
func measureSkew(addr netip.Addr, id uint16, timeout time.Duration) (time.Duration, error) {
	if !addr.Is4() {
		return 0, errors.New("ICMP timestamps exist for IPv4 only")
	}
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return 0, fmt.Errorf("opening a raw ICMP socket: %w", err)
	}
	defer c.Close()
	sent := time.Now()
	if _, err := c.WriteTo(timestampRequest(id, 1, sent), &net.IPAddr{IP: addr.AsSlice()}); err != nil {
		return 0, fmt.Errorf("sending an ICMP timestamp request: %w", err)
	}
	deadline := sent.Add(timeout)
	buf := make([]byte, 1500)
	for {
		_ = c.SetReadDeadline(deadline)
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return 0, errors.New("no ICMP timestamp reply")
		}
		got := time.Now()
		ip, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		src, _ := netip.AddrFromSlice(ip.IP)
		if src.Unmap() != addr {
			continue
		}
		r, err := parseTimestampReply(buf[:n])
		if err != nil || r.id != id {
			continue
		}
		return skew(r.originate, r.receive, r.transmit, msOfDay(got)), nil
	}
}
