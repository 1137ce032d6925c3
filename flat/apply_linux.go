package flat

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// applyStep makes one change. Adds tolerate EEXIST (a bridge only if it is
// compatible), deletes tolerate "not found", so a step can be replayed.
func (c *conn) applyStep(st Step) error {
	switch st.Kind {
	case StepCreateBridge:
		return c.ensureBridge(st)
	case StepAddrAdd, StepAddrReplace:
		l, err := c.h.LinkByName(st.Link)
		if err != nil {
			return err
		}
		err = c.addrAdd(l.Attrs().Index, st.Addr, st.Kind == StepAddrReplace)
		if isExist(err) {
			return nil
		}
		return err
	case StepAddrDel:
		return c.addrDel(st)
	case StepSetMaster:
		return c.setMaster(st)
	case StepRouteAdd, StepRouteDel:
		return c.route(st)
	case StepSetMTU, StepSetMAC, StepSetUp, StepDeleteLink:
		return c.linkStep(st)
	}
	return fmt.Errorf("unknown step kind %d", st.Kind)
}

// ensureBridge creates the bridge, or accepts an existing one that is a
// bridge with the wanted MAC; then pins MTU and sets it up.
func (c *conn) ensureBridge(st Step) error {
	mac, err := net.ParseMAC(st.MAC)
	if err != nil {
		return fmt.Errorf("bad mac %q: %w", st.MAC, err)
	}
	err = c.createBridge(st.Link, mac, st.MTU)
	if err != nil && !isExist(err) {
		return err
	}
	l, lerr := c.h.LinkByName(st.Link)
	if lerr != nil {
		return lerr
	}
	if isExist(err) {
		if l.Type() != "bridge" || l.Attrs().HardwareAddr.String() != mac.String() {
			return fmt.Errorf("%s already exists and is not a compatible bridge (%s, mac %s)", st.Link, l.Type(), l.Attrs().HardwareAddr)
		}
	}
	// A bridge keeps its MTU only once it has been changed through its own
	// handler (the kernel then marks it as set by the user); until then it
	// follows its smallest port, and a container veth with a smaller MTU
	// would shrink the host's MTU. The MTU given at creation does not count,
	// so a fresh bridge gets a real change: down by one and back.
	if st.MTU > 68 && err == nil {
		if err := c.h.LinkSetMTU(l, st.MTU-1); err != nil {
			return fmt.Errorf("pinning mtu: %w", err)
		}
	}
	if st.MTU > 0 {
		if err := c.h.LinkSetMTU(l, st.MTU); err != nil {
			return fmt.Errorf("setting mtu: %w", err)
		}
	}
	return c.h.LinkSetUp(l)
}

func (c *conn) addrDel(st Step) error {
	l, err := c.h.LinkByName(st.Link)
	if err != nil {
		return err
	}
	na := &netlink.Addr{IPNet: prefixIPNet(st.Addr.Prefix)}
	if st.Addr.Peer.IsValid() {
		na.Peer = prefixIPNet(st.Addr.Peer)
	}
	err = c.h.AddrDel(l, na)
	if kernel.IsNotFound(err) {
		return nil
	}
	return err
}

func (c *conn) setMaster(st Step) error {
	l, err := c.h.LinkByName(st.Link)
	if err != nil {
		return err
	}
	if st.Master == "" {
		return c.h.LinkSetNoMaster(l)
	}
	m, err := c.h.LinkByName(st.Master)
	if err != nil {
		return err
	}
	return c.h.LinkSetMaster(l, m)
}

func (c *conn) route(st Step) error {
	l, err := c.h.LinkByName(st.Route.Dev)
	if err != nil {
		return err
	}
	nr := netlinkRoute(st.Route, l.Attrs().Index)
	if st.Kind == StepRouteAdd {
		err = c.h.RouteAppend(nr)
		if isExist(err) {
			return nil
		}
		return err
	}
	err = c.h.RouteDel(nr)
	if kernel.IsNotFound(err) {
		return nil
	}
	return err
}

func (c *conn) linkStep(st Step) error {
	l, err := c.h.LinkByName(st.Link)
	if err != nil {
		if st.Kind == StepDeleteLink && kernel.IsNotFound(err) {
			return nil
		}
		return err
	}
	switch st.Kind {
	case StepSetMTU:
		return c.h.LinkSetMTU(l, st.MTU)
	case StepSetMAC:
		mac, err := net.ParseMAC(st.MAC)
		if err != nil {
			return fmt.Errorf("bad mac %q: %w", st.MAC, err)
		}
		return c.h.LinkSetHardwareAddr(l, mac)
	case StepSetUp:
		if st.Up {
			return c.h.LinkSetUp(l)
		}
		return c.h.LinkSetDown(l)
	default: // StepDeleteLink
		err := c.h.LinkDel(l)
		if kernel.IsNotFound(err) {
			return nil
		}
		return err
	}
}

// netlinkRoute converts a Route for the link with the given index.
func netlinkRoute(r Route, index int) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: index,
		Table:     r.Table,
		Type:      r.Type,
		Protocol:  netlink.RouteProtocol(r.Protocol),
		Scope:     netlink.Scope(r.Scope),
		Dst:       prefixIPNet(r.Dst),
		Priority:  r.Metric,
		Tos:       r.TOS,
		Realm:     r.Realm,
		Family:    unix.AF_INET,
		MTU:       r.Metrics.MTU, MTULock: r.Metrics.MTULock, Window: r.Metrics.Window,
		Rtt: r.Metrics.RTT, RttVar: r.Metrics.RTTVar, Ssthresh: r.Metrics.SSThresh,
		Cwnd: r.Metrics.Cwnd, AdvMSS: r.Metrics.AdvMSS, Reordering: r.Metrics.Reordering,
		Hoplimit: r.Metrics.Hoplimit, InitCwnd: r.Metrics.InitCwnd, Features: r.Metrics.Features,
		RtoMin: r.Metrics.RTOMin, RtoMinLock: r.Metrics.RTOMinLock, InitRwnd: r.Metrics.InitRwnd,
		QuickACK: r.Metrics.QuickACK, Congctl: r.Metrics.Congctl, FastOpenNoCookie: r.Metrics.FastOpenNoCookie,
	}
	if r.Dst.Addr().Is6() {
		nr.Family = unix.AF_INET6
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	}
	if r.OnLink {
		nr.Flags = unix.RTNH_F_ONLINK
	}
	return nr
}

// prefixIPNet converts a prefix, keeping the address (not masked).
func prefixIPNet(p netip.Prefix) *net.IPNet {
	if !p.IsValid() {
		return nil
	}
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// applyAll runs every step, best effort: a failed step does not stop the
// ones after it. It returns every failure, each naming its step.
func (c *conn) applyAll(p Plan) error {
	var errs []error
	for i, st := range p.Steps {
		if err := c.applyStep(st); err != nil {
			errs = append(errs, fmt.Errorf("step %d (%s): %w", i+1, st, err))
		}
	}
	return errors.Join(errs...)
}
