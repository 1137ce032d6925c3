package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
)

// ARPProbeOptions say which address to probe for, from which interface.
type ARPProbeOptions struct {
	NetnsPath string        // namespace of Iface ("" = the caller's)
	Iface     string        // interface on the LAN segment (the flat bridge)
	Addr      netip.Addr    // IPv4 address to probe for
	Timeout   time.Duration // how long to listen; DefaultProbeTimeout when 0
	Count     int           // probes to send, spread over Timeout; DefaultProbes when 0
}

// ARPAnnounceOptions say which address to announce, for which MAC.
type ARPAnnounceOptions struct {
	NetnsPath string           // namespace of Iface ("" = the caller's)
	Iface     string           // interface to send on
	Addr      netip.Addr       // IPv4 address being claimed
	MAC       net.HardwareAddr // its owner; the MAC of Iface when nil
	Count     int              // announcements; 2 when 0 (RFC 5227 ANNOUNCE_NUM)
	Interval  time.Duration    // between announcements; 200 ms when 0
}

// ARPResolveOptions say whose MAC to ask for, from where.
type ARPResolveOptions struct {
	NetnsPath string        // namespace of Iface ("" = the caller's)
	Iface     string        // interface to ask on
	Src       netip.Addr    // sender address of the requests (ours, on the target's subnet)
	Target    netip.Addr    // the address whose MAC we want
	Timeout   time.Duration // give up after this long
}

// ARPProbe asks the LAN whether o.Addr is in use, RFC 5227 style: ARP
// requests with sender address 0.0.0.0 for o.Addr, then listening until
// the timeout. Any packet from another MAC whose sender address is o.Addr
// (a reply, an announcement) or another host's probe for o.Addr means in
// use; mac is then the other device's MAC. Safe for concurrent use; ctx
// ends it early with ctx's error.
func ARPProbe(ctx context.Context, o ARPProbeOptions) (inUse bool, mac net.HardwareAddr, err error) {
	if !o.Addr.Is4() {
		return false, nil, fmt.Errorf("probing %s: only IPv4 addresses can be probed with ARP", o.Addr)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultProbeTimeout
	}
	if o.Count <= 0 {
		o.Count = DefaultProbes
	}
	c, err := openARP(o.NetnsPath, o.Iface)
	if err != nil {
		return false, nil, fmt.Errorf("probing %s: %w", o.Addr, err)
	}
	defer c.close()
	probe, err := arp.NewPacket(arp.OperationRequest, c.mac, netip.IPv4Unspecified(), make(net.HardwareAddr, 6), o.Addr)
	if err != nil {
		return false, nil, fmt.Errorf("probing %s: %w", o.Addr, err)
	}
	x := exchange{send: probe, count: o.Count, interval: o.Timeout / time.Duration(o.Count),
		deadline: time.Now().Add(o.Timeout),
		match:    func(p *arp.Packet) bool { return probeConflict(p, o.Addr, c.mac) }}
	p, err := c.run(ctx, x)
	if err != nil {
		return false, nil, fmt.Errorf("probing %s on %s: %w", o.Addr, o.Iface, err)
	}
	if p == nil {
		return false, nil, nil
	}
	return true, p.SenderHardwareAddr, nil
}

// ARPAnnounce sends gratuitous ARP requests (sender = target = o.Addr, RFC
// 5227 section 2.3) so that neighbours update their caches for o.Addr to
// o.MAC. Safe for concurrent use.
func ARPAnnounce(ctx context.Context, o ARPAnnounceOptions) error {
	if !o.Addr.Unmap().Is4() {
		return fmt.Errorf("announcing %s: only IPv4 addresses can be announced with ARP", o.Addr)
	}
	if o.Count <= 0 {
		o.Count = 2
	}
	if o.Interval <= 0 {
		o.Interval = 200 * time.Millisecond
	}
	c, err := openARP(o.NetnsPath, o.Iface)
	if err != nil {
		return fmt.Errorf("announcing %s: %w", o.Addr, err)
	}
	defer c.close()
	mac := o.MAC
	if mac == nil {
		mac = c.mac
	}
	garp, err := arp.NewPacket(arp.OperationRequest, mac, o.Addr.Unmap(), make(net.HardwareAddr, 6), o.Addr.Unmap())
	if err != nil {
		return fmt.Errorf("announcing %s for %s: %w", o.Addr, mac, err)
	}
	for i := 0; i < o.Count; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(o.Interval):
			}
		}
		if err := c.send(garp); err != nil {
			return fmt.Errorf("announcing %s on %s: %w", o.Addr, o.Iface, err)
		}
	}
	return nil
}

// ARPResolve asks o.Target's MAC with ordinary ARP requests from o.Src,
// repeated every 500 ms, until a reply or the timeout.
func ARPResolve(ctx context.Context, o ARPResolveOptions) (net.HardwareAddr, error) {
	c, err := openARP(o.NetnsPath, o.Iface)
	if err != nil {
		return nil, err
	}
	defer c.close()
	req, err := arp.NewPacket(arp.OperationRequest, c.mac, o.Src, make(net.HardwareAddr, 6), o.Target)
	if err != nil {
		return nil, fmt.Errorf("asking for %s from %s: %w", o.Target, o.Src, err)
	}
	x := exchange{send: req, interval: 500 * time.Millisecond, deadline: time.Now().Add(o.Timeout),
		match: func(p *arp.Packet) bool { return isReplyFrom(p, o.Target, c.mac) }}
	p, err := c.run(ctx, x)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("no ARP reply from %s on %s within %s", o.Target, o.Iface, o.Timeout)
	}
	return p.SenderHardwareAddr, nil
}

// SendGratuitousARP broadcasts one ARP announcement for addr (RFC 5227) out
// of ifname inside the namespace at netnsPath ("" = the agent's own), so
// neighbours and switches learn the address's new home at once. IPv4 only.
// It first waits (up to 3 s) for the link to be operationally up: a packet
// sent on a link just set up may otherwise be dropped silently.
func SendGratuitousARP(netnsPath, ifname string, addr netip.Addr) error {
	if !addr.Unmap().Is4() {
		return fmt.Errorf("gratuitous arp needs an IPv4 address, got %s", addr)
	}
	ns, err := OpenNS(netnsPath)
	if err != nil {
		return err
	}
	err = WaitOperUp(ns, ifname, 3*time.Second)
	ns.Close()
	if err != nil {
		return fmt.Errorf("gratuitous arp: %w", err)
	}
	return ARPAnnounce(context.Background(), ARPAnnounceOptions{NetnsPath: netnsPath, Iface: ifname, Addr: addr, Count: 1})
}

// arpConn is a packet socket bound to one interface for the ARP EtherType.
// The socket belongs to the namespace it was opened in, whatever thread
// later uses it.
type arpConn struct {
	c   *packet.Conn
	mac net.HardwareAddr
}

func openARP(nsPath, iface string) (*arpConn, error) {
	var c *arpConn
	err := InNetns(nsPath, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return fmt.Errorf("interface %s: %w", iface, err)
		}
		if len(ifi.HardwareAddr) != 6 {
			return fmt.Errorf("interface %s has no Ethernet MAC", iface)
		}
		pc, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
		if err != nil {
			return fmt.Errorf("opening a packet socket on %s: %w", iface, err)
		}
		c = &arpConn{c: pc, mac: ifi.HardwareAddr}
		return nil
	})
	return c, err
}

func (c *arpConn) close() { c.c.Close() }

// arpFrame puts p in a broadcast Ethernet frame from p's sender (padded to
// the Ethernet minimum by the library).
func arpFrame(p *arp.Packet) ([]byte, error) {
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: p.SenderHardwareAddr,
		EtherType: ethernet.EtherTypeARP, Payload: pb}
	return f.MarshalBinary()
}

// parseARPFrame decodes an Ethernet frame holding an Ethernet/IPv4 ARP
// packet; ok is false for anything else.
func parseARPFrame(b []byte) (*arp.Packet, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil || f.EtherType != ethernet.EtherTypeARP {
		return nil, false
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil || p.HardwareType != 1 ||
		p.ProtocolType != uint16(ethernet.EtherTypeIPv4) || p.HardwareAddrLength != 6 || p.IPLength != 4 {
		return nil, false
	}
	return &p, true
}

func (c *arpConn) send(p *arp.Packet) error {
	b, err := arpFrame(p)
	if err != nil {
		return err
	}
	_, err = c.c.WriteTo(b, &packet.Addr{HardwareAddr: ethernet.Broadcast})
	return err
}

// exchange is one send-and-listen run.
type exchange struct {
	send     *arp.Packet
	count    int           // sends; 0 = until the deadline
	interval time.Duration // between sends
	deadline time.Time
	match    func(*arp.Packet) bool
}

// run sends x.send on schedule and reads ARP packets until one matches
// (returned), the deadline passes (nil) or ctx ends (its error).
func (c *arpConn) run(ctx context.Context, x exchange) (*arp.Packet, error) {
	sent := 0
	next := time.Now()
	buf := make([]byte, 1600)
	for {
		now := time.Now()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !now.Before(x.deadline) {
			return nil, nil
		}
		if (x.count == 0 || sent < x.count) && !now.Before(next) {
			if err := c.send(x.send); err != nil {
				return nil, fmt.Errorf("sending: %w", err)
			}
			sent++
			next = now.Add(x.interval)
		}
		wait := min(x.deadline.Sub(now), 50*time.Millisecond)
		if x.count == 0 || sent < x.count {
			wait = min(wait, max(next.Sub(now), time.Millisecond))
		}
		if err := c.c.SetReadDeadline(now.Add(wait)); err != nil {
			return nil, fmt.Errorf("setting a read deadline: %w", err)
		}
		n, _, err := c.c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receiving: %w", err)
		}
		if p, ok := parseARPFrame(buf[:n]); ok && x.match(p) {
			return p, nil
		}
	}
}

// ARPListener receives the ARP packets seen on one link (incoming and our
// own outgoing ones), for watching what was sent. Not safe for concurrent
// use; Close when done.
type ARPListener struct{ c *arpConn }

// ListenARP opens a listener on ifname inside the namespace at netnsPath.
func ListenARP(netnsPath, ifname string) (*ARPListener, error) {
	c, err := openARP(netnsPath, ifname)
	if err != nil {
		return nil, fmt.Errorf("arp listener: %w", err)
	}
	return &ARPListener{c: c}, nil
}

// Read waits up to timeout for the next ARP packet.
func (l *ARPListener) Read(timeout time.Duration) (*arp.Packet, error) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1600)
	for {
		if err := l.c.c.SetReadDeadline(deadline); err != nil {
			return nil, fmt.Errorf("setting arp read deadline: %w", err)
		}
		n, _, err := l.c.c.ReadFrom(buf)
		if err != nil {
			return nil, fmt.Errorf("reading arp: %w", err)
		}
		if p, ok := parseARPFrame(buf[:n]); ok {
			return p, nil
		}
	}
}

// Close closes the socket.
func (l *ARPListener) Close() error { l.c.close(); return nil }
