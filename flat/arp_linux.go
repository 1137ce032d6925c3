package flat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"golang.org/x/sys/unix"
)

// ProbeOptions says which address to probe for, from which interface.
type ProbeOptions struct {
	NetnsPath string        // namespace of Iface ("" = the caller's)
	Iface     string        // interface on the LAN segment (the flat bridge)
	Addr      netip.Addr    // IPv4 address to probe for
	Timeout   time.Duration // how long to listen; DefaultProbeTimeout when 0
	Count     int           // probes to send, spread over Timeout; DefaultProbes when 0
}

// AnnounceOptions says which address to announce, for which MAC.
type AnnounceOptions struct {
	NetnsPath string           // namespace of Iface ("" = the caller's)
	Iface     string           // interface to send on
	Addr      netip.Addr       // IPv4 address being claimed
	MAC       net.HardwareAddr // its owner; the MAC of Iface when nil
	Count     int              // announcements; 2 when 0 (RFC 5227 ANNOUNCE_NUM)
	Interval  time.Duration    // between announcements; 200 ms when 0
}

// Probe asks the LAN whether o.Addr is in use, RFC 5227 style: ARP requests
// with sender address 0.0.0.0 for o.Addr, then listening until the timeout.
// Any packet from another MAC whose sender address is o.Addr (a reply, an
// announcement) or another host's probe for o.Addr means in use; mac is then
// the other device's MAC. Safe for concurrent use; ctx ends it early with
// ctx's error.
func Probe(ctx context.Context, o ProbeOptions) (inUse bool, mac net.HardwareAddr, err error) {
	if !o.Addr.Is4() {
		return false, nil, fmt.Errorf("probing %s: only IPv4 addresses can be probed with ARP", o.Addr)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultProbeTimeout
	}
	if o.Count <= 0 {
		o.Count = DefaultProbes
	}
	s, err := openARPSocket(o.NetnsPath, o.Iface)
	if err != nil {
		return false, nil, fmt.Errorf("probing %s: %w", o.Addr, err)
	}
	defer s.close()
	probe := arpPacket{Op: arpRequest, SenderMAC: s.mac, SenderIP: netip.IPv4Unspecified(),
		TargetMAC: make(net.HardwareAddr, 6), TargetIP: o.Addr}
	x := exchange{frame: probe.frame(broadcastMAC), count: o.Count, interval: o.Timeout / time.Duration(o.Count),
		deadline: time.Now().Add(o.Timeout),
		match:    func(p arpPacket) bool { return probeConflict(p, o.Addr, s.mac) }}
	p, found, err := s.run(ctx, x)
	if err != nil {
		return false, nil, fmt.Errorf("probing %s on %s: %w", o.Addr, o.Iface, err)
	}
	if !found {
		return false, nil, nil
	}
	return true, p.SenderMAC, nil
}

// Announce sends gratuitous ARP requests (sender = target = o.Addr) so
// that neighbours update their caches for o.Addr to o.MAC. Safe for
// concurrent use.
func Announce(ctx context.Context, o AnnounceOptions) error {
	if !o.Addr.Is4() {
		return fmt.Errorf("announcing %s: only IPv4 addresses can be announced with ARP", o.Addr)
	}
	if o.Count <= 0 {
		o.Count = 2
	}
	if o.Interval <= 0 {
		o.Interval = 200 * time.Millisecond
	}
	s, err := openARPSocket(o.NetnsPath, o.Iface)
	if err != nil {
		return fmt.Errorf("announcing %s: %w", o.Addr, err)
	}
	defer s.close()
	mac := o.MAC
	if mac == nil {
		mac = s.mac
	}
	if len(mac) != 6 {
		return fmt.Errorf("announcing %s: %q is not an Ethernet MAC", o.Addr, mac)
	}
	garp := arpPacket{Op: arpRequest, SenderMAC: mac, SenderIP: o.Addr, TargetMAC: make(net.HardwareAddr, 6), TargetIP: o.Addr}
	frame := garp.frame(broadcastMAC)
	for i := 0; i < o.Count; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(o.Interval):
			}
		}
		if err := s.send(frame); err != nil {
			return fmt.Errorf("announcing %s on %s: %w", o.Addr, o.Iface, err)
		}
	}
	return nil
}

// arpQuery asks target's MAC with ordinary ARP requests from src on iface,
// repeated every 500 ms, until a reply or the timeout.
func arpQuery(ctx context.Context, nsPath, iface string, src, target netip.Addr, timeout time.Duration) (net.HardwareAddr, error) {
	s, err := openARPSocket(nsPath, iface)
	if err != nil {
		return nil, err
	}
	defer s.close()
	req := arpPacket{Op: arpRequest, SenderMAC: s.mac, SenderIP: src, TargetMAC: make(net.HardwareAddr, 6), TargetIP: target}
	x := exchange{frame: req.frame(broadcastMAC), interval: 500 * time.Millisecond, deadline: time.Now().Add(timeout),
		match: func(p arpPacket) bool { return isReplyFrom(p, target, s.mac) }}
	p, found, err := s.run(ctx, x)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("no ARP reply from %s on %s within %s", target, iface, timeout)
	}
	return p.SenderMAC, nil
}

// arpSocket is an AF_PACKET socket bound to one interface, receiving ARP.
type arpSocket struct {
	fd      int
	ifindex int
	mac     net.HardwareAddr
}

// openARPSocket opens the socket inside the namespace; it stays there.
func openARPSocket(nsPath, iface string) (*arpSocket, error) {
	var s *arpSocket
	err := kernel.InNetns(nsPath, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return fmt.Errorf("interface %s: %w", iface, err)
		}
		if len(ifi.HardwareAddr) != 6 {
			return fmt.Errorf("interface %s has no Ethernet MAC", iface)
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return fmt.Errorf("opening packet socket: %w", err)
		}
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index}
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			return fmt.Errorf("binding packet socket to %s: %w", iface, err)
		}
		s = &arpSocket{fd: fd, ifindex: ifi.Index, mac: ifi.HardwareAddr}
		return nil
	})
	return s, err
}

func (s *arpSocket) close() { unix.Close(s.fd) }

func (s *arpSocket) send(frame []byte) error {
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: s.ifindex, Halen: 6}
	copy(sa.Addr[:], frame[0:6])
	return unix.Sendto(s.fd, frame, 0, sa)
}

// exchange is one send-and-listen run.
type exchange struct {
	frame    []byte
	count    int           // sends; 0 = until the deadline
	interval time.Duration // between sends
	deadline time.Time
	match    func(arpPacket) bool
}

// run sends x.frame on schedule and reads ARP packets (not our own
// outgoing ones) until one matches, the deadline passes or ctx ends.
func (s *arpSocket) run(ctx context.Context, x exchange) (arpPacket, bool, error) {
	sent := 0
	next := time.Now()
	buf := make([]byte, 1500)
	for {
		now := time.Now()
		if ctx.Err() != nil {
			return arpPacket{}, false, ctx.Err()
		}
		if !now.Before(x.deadline) {
			return arpPacket{}, false, nil
		}
		if (x.count == 0 || sent < x.count) && !now.Before(next) {
			if err := s.send(x.frame); err != nil {
				return arpPacket{}, false, fmt.Errorf("sending: %w", err)
			}
			sent++
			next = now.Add(x.interval)
		}
		wait := min(x.deadline.Sub(now), 50*time.Millisecond)
		if x.count == 0 || sent < x.count {
			wait = min(wait, max(next.Sub(now), time.Millisecond))
		}
		p, ok, err := s.recv(buf, wait)
		if err != nil {
			return arpPacket{}, false, err
		}
		if ok && x.match(p) {
			return p, true, nil
		}
	}
}

// recv waits up to wait for one incoming ARP packet.
func (s *arpSocket) recv(buf []byte, wait time.Duration) (arpPacket, bool, error) {
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(wait.Milliseconds())+1)
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return arpPacket{}, false, nil
		}
		return arpPacket{}, false, fmt.Errorf("waiting for packets: %w", err)
	}
	if n == 0 {
		return arpPacket{}, false, nil
	}
	m, from, err := unix.Recvfrom(s.fd, buf, unix.MSG_DONTWAIT)
	if err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return arpPacket{}, false, nil
		}
		return arpPacket{}, false, fmt.Errorf("receiving: %w", err)
	}
	if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
		return arpPacket{}, false, nil
	}
	p, ok := parseARPFrame(buf[:m])
	return p, ok, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
