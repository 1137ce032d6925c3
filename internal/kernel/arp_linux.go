package kernel

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// SendGratuitousARP broadcasts one ARP announcement for addr (RFC 5227) out
// of ifname inside the namespace at netnsPath ("" = the agent's own), so
// neighbours and switches learn the address's new home at once. IPv4 only.
// RFC 5227 suggests sending two, two seconds apart; call it again for that.
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
	return InNetns(netnsPath, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("gratuitous arp: looking up %s: %w", ifname, err)
		}
		mac, err := MACFrom(ifi.HardwareAddr)
		if err != nil {
			return fmt.Errorf("gratuitous arp on %s: %w", ifname, err)
		}
		return sendARP(ifi.Index, Announcement(mac, addr.Unmap()))
	})
}

// SendARP broadcasts p out of ifname inside the namespace at netnsPath.
func SendARP(netnsPath, ifname string, p ARP) error {
	return InNetns(netnsPath, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("sending arp: looking up %s: %w", ifname, err)
		}
		return sendARP(ifi.Index, p)
	})
}

func sendARP(ifindex int, p ARP) error {
	pkt, err := p.Marshal()
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("opening packet socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifindex, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	if err := unix.Sendto(fd, pkt, 0, to); err != nil {
		return fmt.Errorf("sending arp on link %d: %w", ifindex, err)
	}
	return nil
}

// ARPListener receives ARP packets on one link (a packet socket). Not safe
// for concurrent use; Close when done.
type ARPListener struct{ fd int }

// ListenARP opens a listener on ifname inside the namespace at netnsPath.
func ListenARP(netnsPath, ifname string) (*ARPListener, error) {
	var l *ARPListener
	err := InNetns(netnsPath, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("arp listener: looking up %s: %w", ifname, err)
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return fmt.Errorf("opening packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("binding packet socket to %s: %w", ifname, err)
		}
		l = &ARPListener{fd: fd}
		return nil
	})
	return l, err
}

// Read waits up to timeout for the next ARP packet.
func (l *ARPListener) Read(timeout time.Duration) (ARP, error) {
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(l.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return ARP{}, fmt.Errorf("setting arp read timeout: %w", err)
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := unix.Recvfrom(l.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ARP{}, fmt.Errorf("reading arp: %w", err)
		}
		return ParseARP(buf[:n])
	}
}

// Close closes the socket.
func (l *ARPListener) Close() error { return unix.Close(l.fd) }

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
