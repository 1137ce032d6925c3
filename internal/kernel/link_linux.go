package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureBridge makes the bridge of spec exist in ns, up, with STP off,
// forward delay 0, and spec's MTU and MAC when given. An existing bridge of
// that name is adopted and fixed in place; a link of that name that is not a
// bridge is an error and is left alone. It returns the link and what it
// changed (empty when nothing). Idempotent; not safe to race with another
// caller ensuring the same name.
func EnsureBridge(ns *NS, spec BridgeSpec) (netlink.Link, []string, error) {
	if err := spec.Validate(); err != nil {
		return nil, nil, err
	}
	var changes []string
	link, err := ns.H.LinkByName(spec.Name)
	if err != nil && !IsNotFound(err) {
		return nil, nil, fmt.Errorf("looking up bridge %s: %w", spec.Name, err)
	}
	if link == nil {
		// No MTU in the create request: an MTU given at creation is not
		// "set by user", so the kernel would re-adjust it to its ports'
		// (1500 with none). fixLink sets it below, which pins it.
		if err := CreateBridge(ns, spec.Name, spec.MAC, 0); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, nil, fmt.Errorf("creating bridge %s: %w", spec.Name, err)
		}
		changes = append(changes, "created bridge "+spec.Name)
		if link, err = ns.H.LinkByName(spec.Name); err != nil {
			return nil, changes, fmt.Errorf("looking up bridge %s: %w", spec.Name, err)
		}
	}
	if link.Type() != "bridge" {
		return nil, changes, fmt.Errorf("link %s exists but is a %s, not a bridge; remove or rename it", spec.Name, link.Type())
	}
	stp, fwd, err := BridgeSTP(ns, link.Attrs().Index)
	if err != nil {
		return nil, changes, err
	}
	if stp != 0 || fwd != 0 {
		if err := setBridgeSTPOff(ns, link.Attrs().Index); err != nil {
			return nil, changes, err
		}
		changes = append(changes, "stp off and forward delay 0 on "+spec.Name)
	}
	return finishLink(ns, link, spec.MTU, spec.MAC, changes)
}

// finishLink applies fixLink and returns the link as the kernel now has it,
// with every change made so far: the common tail of the Ensure functions.
func finishLink(ns *NS, link netlink.Link, mtu int, mac net.HardwareAddr, changes []string) (netlink.Link, []string, error) {
	more, err := fixLink(ns, link, mtu, mac)
	changes = append(changes, more...)
	if err != nil {
		return nil, changes, err
	}
	name := link.Attrs().Name
	if link, err = ns.H.LinkByName(name); err != nil {
		return nil, changes, fmt.Errorf("looking up %s: %w", name, err)
	}
	return link, changes, nil
}

// fixLink sets MTU and MAC (when non-zero and different) and brings the
// link up.
func fixLink(ns *NS, link netlink.Link, mtu int, mac net.HardwareAddr) ([]string, error) {
	var changes []string
	a := link.Attrs()
	if mtu > 0 && a.MTU != mtu {
		if err := ns.H.LinkSetMTU(link, mtu); err != nil {
			return changes, fmt.Errorf("setting mtu %d on %s: %w", mtu, a.Name, err)
		}
		changes = append(changes, fmt.Sprintf("mtu %d on %s (was %d)", mtu, a.Name, a.MTU))
	}
	if mac != nil && !bytes.Equal(a.HardwareAddr, mac) {
		if err := setMAC(ns, link, mac); err != nil {
			return changes, err
		}
		changes = append(changes, fmt.Sprintf("mac %s on %s (was %s)", mac, a.Name, a.HardwareAddr))
	}
	if a.Flags&net.FlagUp == 0 {
		if err := ns.H.LinkSetUp(link); err != nil {
			return changes, fmt.Errorf("bringing %s up: %w", a.Name, err)
		}
		changes = append(changes, a.Name+" up")
	}
	return changes, nil
}

// setMAC changes a link's address, taking it down for it when the driver
// refuses a live change.
func setMAC(ns *NS, link netlink.Link, mac net.HardwareAddr) error {
	name := link.Attrs().Name
	err := ns.H.LinkSetHardwareAddr(link, mac)
	if errors.Is(err, unix.EBUSY) {
		if err = ns.H.LinkSetDown(link); err == nil {
			err = ns.H.LinkSetHardwareAddr(link, mac)
			if uerr := ns.H.LinkSetUp(link); err == nil {
				err = uerr
			}
		}
	}
	if err != nil {
		return fmt.Errorf("setting mac %s on %s: %w", mac, name, err)
	}
	return nil
}

// EnsureVXLAN makes the VXLAN link of spec exist in ns and be up. An
// existing VXLAN link of that name is adopted when compatible (MTU and MAC
// are fixed in place) and recreated when its VNI, port, local address,
// underlay link or learning differ; recreating drops its FDB entries,
// neighbours and routes, which the next Reconcile puts back. A link of that
// name that is not a VXLAN is an error and is left alone. It returns the
// link and what it changed. Idempotent.
func EnsureVXLAN(ns *NS, spec VXLANSpec) (netlink.Link, []string, error) {
	if err := spec.Validate(); err != nil {
		return nil, nil, err
	}
	var changes []string
	link, err := ns.H.LinkByName(spec.Name)
	if err != nil && !IsNotFound(err) {
		return nil, nil, fmt.Errorf("looking up vxlan %s: %w", spec.Name, err)
	}
	if link != nil {
		vx, ok := link.(*netlink.Vxlan)
		if !ok {
			return nil, nil, fmt.Errorf("link %s exists but is a %s, not a vxlan; remove or rename it", spec.Name, link.Type())
		}
		if why := vxlanIncompatible(spec, vxlanSpecOf(vx)); why != "" {
			if err := ns.H.LinkDel(link); err != nil && !IsNotFound(err) {
				return nil, nil, fmt.Errorf("removing incompatible vxlan %s (%s): %w", spec.Name, why, err)
			}
			changes = append(changes, fmt.Sprintf("removed vxlan %s (%s)", spec.Name, why))
			link = nil
		}
	}
	if link == nil {
		if err := ns.H.LinkAdd(newVxlan(spec)); err != nil {
			return nil, changes, fmt.Errorf("creating vxlan %s: %w", spec.Name, err)
		}
		changes = append(changes, fmt.Sprintf("created vxlan %s vni %d port %d", spec.Name, spec.VNI, spec.Port))
		if link, err = ns.H.LinkByName(spec.Name); err != nil {
			return nil, changes, fmt.Errorf("looking up vxlan %s: %w", spec.Name, err)
		}
	}
	return finishLink(ns, link, spec.MTU, spec.MAC, changes)
}

func newVxlan(spec VXLANSpec) *netlink.Vxlan {
	vx := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: spec.Name, MTU: spec.MTU, HardwareAddr: spec.MAC},
		VxlanId:      spec.VNI,
		VtepDevIndex: spec.ParentIndex,
		Port:         spec.Port,
		Learning:     spec.Learning,
	}
	if spec.Local.IsValid() {
		vx.SrcAddr = net.IP(spec.Local.Unmap().AsSlice())
	}
	return vx
}

func vxlanSpecOf(vx *netlink.Vxlan) VXLANSpec {
	s := VXLANSpec{
		Name:        vx.Name,
		VNI:         vx.VxlanId,
		Port:        vx.Port,
		ParentIndex: vx.VtepDevIndex,
		MTU:         vx.MTU,
		MAC:         vx.HardwareAddr,
		Learning:    vx.Learning,
	}
	s.Local = addrFromIP(vx.SrcAddr)
	return s
}

// DeleteLink removes the named link; a link that does not exist is not an
// error. Deleting one end of a veth removes both. Idempotent.
func DeleteLink(ns *NS, name string) error {
	link, err := ns.H.LinkByName(name)
	if IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking up %s: %w", name, err)
	}
	if err := ns.H.LinkDel(link); err != nil && !IsNotFound(err) {
		return fmt.Errorf("deleting %s: %w", name, err)
	}
	return nil
}

// LinkWithAddr finds the link in ns that holds addr (the underlay address
// of a host, say) and returns it; its MTU is the underlay MTU.
func LinkWithAddr(ns *NS, addr netip.Addr) (netlink.Link, error) {
	addr = addr.Unmap()
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := ns.H.AddrList(nil, family)
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	for _, a := range addrs {
		if addrFromIP(a.IP) == addr {
			link, err := ns.H.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("looking up link %d: %w", a.LinkIndex, err)
			}
			return link, nil
		}
	}
	return nil, fmt.Errorf("no link in %s has address %s", ns, addr)
}

// addrFromIP converts a net.IP (4- or 16-byte form) to an unmapped
// netip.Addr; nil gives the zero Addr.
func addrFromIP(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

// WaitOperUp waits until the named link's operational state is up (the
// kernel has seen carrier and activated its queue; packets sent before
// that, such as a gratuitous ARP right after `ip link set up`, may be
// dropped). It polls every 10 ms and fails after timeout.
func WaitOperUp(ns *NS, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		l, err := ns.H.LinkByName(name)
		if err != nil {
			return fmt.Errorf("waiting for %s to come up: %w", name, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s in %s still %s after %s", name, ns, l.Attrs().OperState, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
