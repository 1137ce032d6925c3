package flat

import (
	"errors"
	"fmt"
	"net"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// conn talks rtnetlink to one network namespace: a netlink.Handle for the
// ordinary calls, and a raw route socket for the message the netlink
// library cannot build (an address with IFA_RT_PRIORITY); the bridge with
// STP off and its STP state come from package kernel. Both sockets live
// in the namespace, so no goroutine ever switches namespace for them. A conn
// is used by one goroutine at a time.
type conn struct {
	path string // "" = the caller's namespace
	h    *netlink.Handle
	raw  *nl.SocketHandle
}

// openConn opens netlink sockets in the namespace at path ("" = current).
func openConn(path string) (*conn, error) {
	target := netns.None()
	if path != "" {
		ns, err := netns.GetFromPath(path)
		if err != nil {
			return nil, fmt.Errorf("opening network namespace %s: %w", path, err)
		}
		defer ns.Close()
		target = ns
	}
	h, err := netlink.NewHandleAt(target, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink handle%s: %w", inNS(path), err)
	}
	s, err := nl.GetNetlinkSocketAt(target, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("opening netlink socket%s: %w", inNS(path), err)
	}
	return &conn{path: path, h: h, raw: &nl.SocketHandle{Socket: s}}, nil
}

func inNS(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

// Close releases the sockets.
func (c *conn) Close() {
	c.h.Close()
	c.raw.Close()
}

// request starts a raw rtnetlink request on the namespace's socket.
func (c *conn) request(typ, flags int) *nl.NetlinkRequest {
	return &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   uint32(unix.SizeofNlMsghdr),
			Type:  uint16(typ),
			Flags: unix.NLM_F_REQUEST | uint16(flags),
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: c.raw},
	}
}

// createBridge creates a bridge with the given MAC and MTU, STP off and
// forward delay 0 (EEXIST if it exists): kernel.CreateBridge in the
// conn's namespace.
func (c *conn) createBridge(name string, mac net.HardwareAddr, mtu int) error {
	ns, err := kernel.OpenNS(c.path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return kernel.CreateBridge(ns, name, mac, mtu)
}

// bridgeSTP reads the STP state and forward delay (centiseconds) of the
// bridge with the given index.
func (c *conn) bridgeSTP(index int) (stp bool, fwdDelay uint32, err error) {
	ns, err := kernel.OpenNS(c.path)
	if err != nil {
		return false, 0, err
	}
	defer ns.Close()
	on, fwd, err := kernel.BridgeSTP(ns, index)
	return on != 0, fwd, err
}

// addrAdd adds (or, with replace, rewrites) an address on the link with
// the given index, with its flags, label, broadcast, lifetimes and prefix
// route metric.
func (c *conn) addrAdd(index int, a Addr, replace bool) error {
	flags := unix.NLM_F_CREATE | unix.NLM_F_ACK | unix.NLM_F_EXCL
	if replace {
		flags = unix.NLM_F_CREATE | unix.NLM_F_ACK | unix.NLM_F_REPLACE
	}
	req := c.request(unix.RTM_NEWADDR, flags)
	ip := a.Prefix.Addr()
	family := unix.AF_INET6
	if ip.Is4() {
		family = unix.AF_INET
	}
	msg := nl.NewIfAddrmsg(family)
	msg.Index = uint32(index)
	msg.Prefixlen = uint8(a.Prefix.Bits())
	if a.Peer.IsValid() {
		msg.Prefixlen = uint8(a.Peer.Bits())
	}
	msg.Scope = a.Scope
	f := a.Flags & settableAddrFlags
	msg.IfAddrmsg.Flags = uint8(f & 0xff)
	req.AddData(msg)
	local := ip.AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, local))
	if a.Peer.IsValid() {
		req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, a.Peer.Addr().AsSlice()))
	} else {
		req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, local))
	}
	req.AddData(nl.NewRtAttr(unix.IFA_FLAGS, nl.Uint32Attr(f)))
	if ip.Is4() {
		if a.Broadcast.IsValid() {
			req.AddData(nl.NewRtAttr(unix.IFA_BROADCAST, a.Broadcast.AsSlice()))
		}
		if a.Label != "" {
			req.AddData(nl.NewRtAttr(unix.IFA_LABEL, nl.ZeroTerminated(a.Label)))
		}
	}
	if a.Valid != Forever || a.Preferred != Forever {
		ci := nl.IfaCacheInfo{IfaCacheinfo: unix.IfaCacheinfo{Prefered: a.Preferred, Valid: a.Valid}}
		req.AddData(nl.NewRtAttr(unix.IFA_CACHEINFO, ci.Serialize()))
	}
	if a.Metric != 0 {
		req.AddData(nl.NewRtAttr(unix.IFA_RT_PRIORITY, nl.Uint32Attr(a.Metric)))
	}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// do runs fn on an OS thread inside the conn's namespace (for AF_PACKET
// and ioctl sockets, which belong to the namespace of the thread that
// opens them). See inNetns.
func (c *conn) do(fn func() error) error { return kernel.InNetns(c.path, fn) }

// isExist reports whether err says the object already exists.
func isExist(err error) bool { return errors.Is(err, unix.EEXIST) }
