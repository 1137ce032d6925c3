package vxlan

import (
	"fmt"
	"net/netip"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// Direct routing (flannel's DirectRouting, Calico's CrossSubnet): a peer on
// one of this host's connected underlay subnets is reached without
// encapsulation, by a plain route to each of its blocks via its underlay
// address on the underlay link. The LAN then carries packets whose source
// and destination are container addresses, which only works where the
// network delivers frames between the two hosts without checking source
// addresses (a switch or a plain bridge; not most clouds, whose virtual
// networks drop addresses they did not assign). Peers across a router keep
// the VXLAN tunnel.

// checkDirect validates the direct-routing options.
func (o Options) checkDirect() error {
	if o.UnderlayDevice != "" {
		if err := kernel.ValidateIfName(o.UnderlayDevice); err != nil {
			return fmt.Errorf("vxlan: underlay device: %w", err)
		}
	}
	if !o.DirectRouting {
		return nil
	}
	if o.UnderlayDevice == "" {
		return fmt.Errorf("vxlan: direct routing needs the underlay device")
	}
	for _, c := range o.Connected {
		if !c.IsValid() {
			return fmt.Errorf("vxlan: invalid connected subnet %v", c)
		}
	}
	return nil
}

// routeLinks are the links whose proto-95 routes the plane owns: the VXLAN
// link, and the underlay link when known (so that direct routes are
// withdrawn when direct routing is turned off or a peer moves away).
func (s State) routeLinks() []string {
	if s.UnderlayDevice == "" || s.UnderlayDevice == s.Device.Name {
		return []string{s.Device.Name}
	}
	return []string{s.Device.Name, s.UnderlayDevice}
}

// direct reports whether a peer at underlay address under is routed
// directly: direct routing is on and under lies in a connected subnet (but
// is not its network address).
func (p *planner) direct(under netip.Addr) bool {
	if !p.opts.DirectRouting {
		return false
	}
	for _, c := range p.opts.Connected {
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

// addDirect adds plain routes to peer's blocks via its underlay address on
// the underlay link: no FDB entry, no neighbour on the VXLAN link.
func (p *planner) addDirect(peer Node, under netip.Addr) {
	blocks := p.claim(peer)
	for _, blk := range blocks {
		p.st.Objects.Routes = append(p.st.Objects.Routes, kernel.Route{Dst: blk, Gw: under,
			Dev: p.opts.UnderlayDevice, Src: p.st.Bridge.FirstGateway(blk.Addr().Is4())})
	}
	if len(blocks) > 0 {
		mac, _ := kernel.MACFrom(peer.VTEPMAC)
		p.macs[mac] = peer.Name
		p.claims.ClaimUnderlay(under, peer.Name)
		p.st.Direct = append(p.st.Direct, peer.Name) // peers come sorted
	}
}
