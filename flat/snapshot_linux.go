package flat

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TakeSnapshot reads the NIC iface (link, every address, every route through
// it in every table) and the bridge (nil when absent) in the network
// namespace at netnsPath ("" = the caller's). A missing NIC gives a snapshot
// with NIC nil, not an error. It only reads; safe for concurrent use.
func TakeSnapshot(netnsPath, iface, bridge string) (Snapshot, error) {
	c, err := openConn(netnsPath)
	if err != nil {
		return Snapshot{}, err
	}
	defer c.Close()
	return c.snapshot(iface, bridge)
}

// snapshot reads the NIC and the bridge through c.
func (c *conn) snapshot(iface, bridge string) (Snapshot, error) {
	links, err := c.h.LinkList()
	if err != nil {
		return Snapshot{}, fmt.Errorf("listing links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	routes, err := c.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return Snapshot{}, fmt.Errorf("listing routes: %w", err)
	}
	var s Snapshot
	for _, l := range links {
		a := l.Attrs()
		switch a.Name {
		case iface:
			link := c.linkOf(l, names)
			s.NIC = &link
			if s.Addrs, s.Routes, err = c.configOf(l, names, routes); err != nil {
				return Snapshot{}, err
			}
		case bridge:
			if s.Bridge, err = c.bridgeOf(l, links, names, routes); err != nil {
				return Snapshot{}, err
			}
		}
	}
	return s, nil
}

// linkOf converts a netlink link.
func (c *conn) linkOf(l netlink.Link, names map[int]string) Link {
	a := l.Attrs()
	link := Link{
		Name:        a.Name,
		Index:       a.Index,
		Kind:        l.Type(),
		MAC:         a.HardwareAddr.String(),
		MTU:         a.MTU,
		Up:          a.RawFlags&unix.IFF_UP != 0,
		MasterIndex: a.MasterIndex,
	}
	if a.MasterIndex != 0 {
		link.Master = names[a.MasterIndex]
	}
	link.Wireless = c.wireless(a.Name, a.Index, link.MAC)
	return link
}

// bridgeOf reads the bridge's link, STP settings, ports and configuration.
func (c *conn) bridgeOf(l netlink.Link, links []netlink.Link, names map[int]string, routes []netlink.Route) (*Bridge, error) {
	b := &Bridge{Link: c.linkOf(l, names)}
	if b.Link.Kind == "bridge" {
		var err error
		if b.STP, b.ForwardDelay, err = c.bridgeSTP(b.Link.Index); err != nil {
			return nil, err
		}
	}
	for _, p := range links {
		if p.Attrs().MasterIndex == b.Link.Index {
			b.Ports = append(b.Ports, p.Attrs().Name)
		}
	}
	var err error
	if b.Addrs, b.Routes, err = c.configOf(l, names, routes); err != nil {
		return nil, err
	}
	return b, nil
}

// configOf returns the addresses on l and the routes (hops) through it.
func (c *conn) configOf(l netlink.Link, names map[int]string, all []netlink.Route) ([]Addr, []Route, error) {
	idx := l.Attrs().Index
	nas, err := c.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, nil, fmt.Errorf("listing addresses of %s: %w", l.Attrs().Name, err)
	}
	var routes []Route
	for _, nr := range all {
		if len(nr.MultiPath) == 0 {
			if nr.LinkIndex == idx {
				routes = append(routes, routeOf(nr, nr.LinkIndex, nr.Gw, nr.Flags, false, names))
			}
			continue
		}
		for _, hop := range nr.MultiPath {
			if hop.LinkIndex == idx {
				routes = append(routes, routeOf(nr, hop.LinkIndex, hop.Gw, hop.Flags, true, names))
			}
		}
	}
	addrs := make([]Addr, 0, len(nas))
	for _, na := range nas {
		addrs = append(addrs, addrOf(na, routes))
	}
	return addrs, routes, nil
}

// addrOf converts a netlink address; the prefix-route metric is read off
// the kernel route the address made.
func addrOf(na netlink.Addr, routes []Route) Addr {
	a := Addr{
		Prefix:    ipNetPrefix(na.IPNet),
		Label:     na.Label,
		Flags:     uint32(na.Flags),
		Scope:     uint8(na.Scope),
		Valid:     uint32(na.ValidLft),
		Preferred: uint32(na.PreferedLft),
	}
	if na.Peer != nil {
		a.Peer = ipNetPrefix(na.Peer)
	}
	if ip, ok := netip.AddrFromSlice(na.Broadcast); ok {
		a.Broadcast = ip.Unmap()
	}
	if !a.Prefix.Addr().Is4() {
		a.Label = ""
	}
	a.Metric = prefixMetric(a, routes)
	return a
}

// prefixMetric finds the metric of the prefix route the kernel made for a
// (IFA_RT_PRIORITY); 0 when it is the default or there is none.
func prefixMetric(a Addr, routes []Route) uint32 {
	if a.Flags&addrFlagNoPrefixRoute != 0 || a.Peer.IsValid() {
		return 0
	}
	ip := a.Prefix.Addr()
	def := defaultPrefixMetric4
	if ip.Is6() {
		def = defaultPrefixMetric6
	}
	for _, r := range routes {
		if r.Protocol != protoKernel || r.Table != tableMain || r.Type != routeUnicast || r.Dst != a.Prefix.Masked() {
			continue
		}
		if ip.Is4() && r.Src != ip {
			continue
		}
		if r.Metric == def {
			return 0
		}
		return uint32(r.Metric)
	}
	return 0
}

// routeOf converts one netlink route (or one hop of it).
func routeOf(nr netlink.Route, dev int, gw net.IP, flags int, multipath bool, names map[int]string) Route {
	r := Route{
		Table:     nr.Table,
		Type:      nr.Type,
		Protocol:  int(nr.Protocol),
		Scope:     int(nr.Scope),
		Dev:       names[dev],
		Metric:    nr.Priority,
		TOS:       nr.Tos,
		Realm:     nr.Realm,
		OnLink:    flags&unix.RTNH_F_ONLINK != 0,
		Multipath: multipath,
		Metrics: RouteMetrics{
			MTU: nr.MTU, MTULock: nr.MTULock, Window: nr.Window, RTT: nr.Rtt, RTTVar: nr.RttVar,
			SSThresh: nr.Ssthresh, Cwnd: nr.Cwnd, AdvMSS: nr.AdvMSS, Reordering: nr.Reordering,
			Hoplimit: nr.Hoplimit, InitCwnd: nr.InitCwnd, Features: nr.Features, RTOMin: nr.RtoMin,
			RTOMinLock: nr.RtoMinLock, InitRwnd: nr.InitRwnd, QuickACK: nr.QuickACK,
			Congctl: nr.Congctl, FastOpenNoCookie: nr.FastOpenNoCookie,
		},
	}
	if nr.Dst != nil {
		r.Dst = ipNetPrefix(nr.Dst)
	} else if nr.Family == unix.AF_INET6 {
		r.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	} else {
		r.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	if ip, ok := netip.AddrFromSlice(nr.Src); ok {
		r.Src = ip.Unmap()
	}
	if ip, ok := netip.AddrFromSlice(gw); ok {
		r.Gw = ip.Unmap()
	}
	return r
}

// ipNetPrefix converts a net.IPNet (IPv4 kept 4 bytes long).
func ipNetPrefix(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	ip = ip.Unmap()
	return netip.PrefixFrom(ip, ones)
}

// wireless reports whether the link is a Wi-Fi device: sysfs says so
// (wireless/ or phy80211/ under /sys/class/net/NAME, looked at only when
// the sysfs entry is the same device: sysfs shows the namespace it was
// mounted in), or the device answers the wireless-extensions SIOCGIWNAME
// ioctl inside its namespace.
func (c *conn) wireless(name string, index int, mac string) bool {
	if sysfsWireless("/sys/class/net", name, index, mac) {
		return true
	}
	w := false
	_ = c.do(func() error {
		w = iwName(name)
		return nil
	})
	return w
}

// sysfsWireless checks root/NAME for a Wi-Fi device, if root/NAME is the
// device with this index and MAC.
func sysfsWireless(root, name string, index int, mac string) bool {
	dir := filepath.Join(root, name)
	b, err := os.ReadFile(filepath.Join(dir, "ifindex"))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(index) {
		return false
	}
	if b, err := os.ReadFile(filepath.Join(dir, "address")); err != nil || strings.TrimSpace(string(b)) != mac {
		return false
	}
	for _, sub := range []string{"wireless", "phy80211"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); err == nil {
			return true
		}
	}
	return false
}

// siocgiwname is SIOCGIWNAME from linux/wireless.h.
const siocgiwname = 0x8b01

// iwName asks the kernel (in the calling thread's namespace) whether name
// is a wireless device: SIOCGIWNAME succeeds only for those.
func iwName(name string) bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var req [unix.IFNAMSIZ + 16]byte // struct iwreq: name + union iwreq_data
	copy(req[:unix.IFNAMSIZ-1], name)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocgiwname, uintptr(unsafe.Pointer(&req[0])))
	return errno == 0
}
