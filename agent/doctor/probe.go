package doctor

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// probeTCP connects to addr:port and closes at once (memberlist ignores a
// stream that ends before its first byte).
func probeTCP(ctx context.Context, addr netip.Addr, port int, timeout time.Duration) Probe {
	if !addr.IsValid() || port == 0 {
		return Probe{}
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr.String(), strconv.Itoa(port)))
	if err != nil {
		return Probe{Tried: true, Detail: shortErr(err)}
	}
	c.Close()
	return Probe{Tried: true, OK: true, Detail: "connected"}
}

// probeUDP sends empty datagrams to addr:port and listens for an ICMP port
// unreachable, which the kernel reports on the connected socket as
// ECONNREFUSED. Silence means open (the VXLAN socket drops what it cannot
// parse, silently) or filtered: UDP cannot tell those apart.
func probeUDP(addr netip.Addr, port int, timeout time.Duration) Probe {
	if !addr.IsValid() || port == 0 {
		return Probe{}
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, uint16(port))))
	if err != nil {
		return Probe{Tried: true, Detail: shortErr(err)}
	}
	defer c.Close()
	buf := make([]byte, 64)
	for i := 0; i < 2; i++ {
		if _, err := c.Write(nil); err != nil {
			return udpVerdict(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(timeout / 2))
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return udpVerdict(err)
		}
	}
	return Probe{Tried: true, OK: true, Detail: "open or filtered (no port unreachable)"}
}

func udpVerdict(err error) Probe {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return Probe{Tried: true, Detail: "ICMP port unreachable (closed or rejected)"}
	}
	return Probe{Tried: true, Detail: shortErr(err)}
}

// shortErr drops the "dial tcp a:b:" prefix the address already tells.
func shortErr(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}
