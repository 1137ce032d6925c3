package vxlan

import (
	"fmt"
	"net/netip"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/overlay"
)

// Direct routing (see overlay.Direct): a peer on one of this host's
// connected underlay subnets gets plain routes via its underlay address,
// no FDB entry and no neighbour on the VXLAN link. Peers across a router
// keep the VXLAN tunnel.

// checkDirect validates the direct-routing options.
func (o Options) checkDirect() error {
	if err := o.Direct.Check(); err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	return nil
}

// routeLinks are the links whose proto-95 routes the plane owns.
func (s State) routeLinks() []string {
	return overlay.Direct{UnderlayDevice: s.UnderlayDevice}.RouteLinks(s.Device.Name)
}

// addDirect adds plain routes to peer's blocks via its underlay address on
// the underlay link.
func (p *planner) addDirect(peer Node, under netip.Addr) {
	blocks := p.claim(peer)
	p.st.Objects.Routes = append(p.st.Objects.Routes, p.opts.Direct.Routes(p.st.Bridge, under, blocks)...)
	if len(blocks) > 0 {
		mac, _ := kernel.MACFrom(peer.VTEPMAC)
		p.macs[mac] = peer.Name
		p.claims.ClaimUnderlay(under, peer.Name)
		p.st.Direct = append(p.st.Direct, peer.Name) // peers come sorted
	}
}
