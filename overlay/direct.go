package overlay

import (
	"fmt"
	"net/netip"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// Direct routing (flannel's DirectRouting, Calico's CrossSubnet), shared by
// the vxlan and wireguard planes: a peer on one of this host's connected
// underlay subnets is reached without the tunnel, by a plain route to each
// of its blocks via its underlay address on the underlay link. The LAN
// then carries packets whose source and destination are container
// addresses, which only works where the network delivers frames between
// the two hosts without checking source addresses (a switch or a plain
// bridge; not most clouds, whose virtual networks drop addresses they did
// not assign), and for WireGuard means cleartext on the LAN. Peers across
// a router keep the tunnel.

// Direct are a plane's direct-routing options. UnderlayDevice is the
// underlay link's name; its proto-95 routes belong to the plane whatever
// DirectRouting says, so turning it off withdraws them. With
// DirectRouting, a peer whose underlay address lies in one of Connected
// (the subnets of this host's underlay addresses) gets plain routes via
// that address on UnderlayDevice instead of tunnel entries.
type Direct struct {
	UnderlayDevice string
	DirectRouting  bool
	Connected      []netip.Prefix
}

// Check validates the options.
func (d Direct) Check() error {
	if d.UnderlayDevice != "" {
		if err := kernel.ValidateIfName(d.UnderlayDevice); err != nil {
			return fmt.Errorf("underlay device: %w", err)
		}
	}
	if !d.DirectRouting {
		return nil
	}
	if d.UnderlayDevice == "" {
		return fmt.Errorf("direct routing needs the underlay device")
	}
	for _, c := range d.Connected {
		if !c.IsValid() {
			return fmt.Errorf("invalid connected subnet %v", c)
		}
	}
	return nil
}

// Reaches reports whether a peer at underlay address under is routed
// directly: direct routing is on and under lies in a connected subnet (but
// is not its network address).
func (d Direct) Reaches(under netip.Addr) bool {
	if !d.DirectRouting {
		return false
	}
	under = under.Unmap()
	for _, c := range d.Connected {
		c = netip.PrefixFrom(c.Addr().Unmap(), c.Bits()-unmapShift(c)).Masked()
		if c.Addr().Is4() == under.Is4() && c.Contains(under) && under != c.Addr() {
			return true
		}
	}
	return false
}

// unmapShift is how many prefix bits an IPv4-mapped IPv6 prefix loses
// when unmapped.
func unmapShift(c netip.Prefix) int {
	if c.Addr().Is4In6() {
		return 96
	}
	return 0
}

// Routes are the plain routes to a direct peer's blocks: via its underlay
// address on the underlay link, source our first gateway of the family.
func (d Direct) Routes(br Bridge, under netip.Addr, blocks []netip.Prefix) []kernel.Route {
	rs := make([]kernel.Route, 0, len(blocks))
	for _, blk := range blocks {
		rs = append(rs, kernel.Route{Dst: blk, Gw: under.Unmap(), Dev: d.UnderlayDevice, Src: br.FirstGateway(blk.Addr().Is4())})
	}
	return rs
}

// RouteLinks are the links whose proto-95 routes a plane with tunnel link
// tunnel owns: the tunnel, and the underlay link when known (so that
// direct routes are withdrawn when direct routing is turned off or a peer
// moves away).
func (d Direct) RouteLinks(tunnel string) []string {
	if d.UnderlayDevice == "" || d.UnderlayDevice == tunnel {
		return []string{tunnel}
	}
	return []string{tunnel, d.UnderlayDevice}
}
