package doctor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// errNoICMPReply: nothing from dst that match accepted within the timeout.
var errNoICMPReply = errors.New("no ICMP reply")

// icmpExchange sends the ICMP message req from src (unspecified: the
// kernel chooses) to dst over a raw socket, then reads until timeout for a
// message from dst that match accepts, and returns when it arrived. The
// clock check and the direct-routing ping differ only in req and match.
// Needs a raw socket (root).
func icmpExchange(src, dst netip.Addr, req []byte, timeout time.Duration, match func([]byte) bool) (time.Time, error) {
	c, err := net.ListenPacket("ip4:icmp", src.String())
	if err != nil {
		return time.Time{}, fmt.Errorf("opening a raw ICMP socket: %w", err)
	}
	defer c.Close()
	if _, err := c.WriteTo(req, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return time.Time{}, fmt.Errorf("sending: %w", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return time.Time{}, errNoICMPReply
		}
		got := time.Now()
		ip, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		if a, _ := netip.AddrFromSlice(ip.IP); a.Unmap() != dst {
			continue
		}
		if match(buf[:n]) {
			return got, nil
		}
	}
}
