package agent

import (
	"net/netip"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/overlay/vxlan"
)

// directOptions adds direct routing to the VXLAN options: the underlay
// link's name (always, so that its proto-95 routes are withdrawn when the
// setting is off) and, with --direct-routing, the subnets of the addresses
// on it, read now (an address added or removed shows at the next pass). A
// failed read leaves Connected empty: every peer keeps the tunnel.
func (p *vxlanPlane) directOptions(o vxlan.Options) vxlan.Options {
	o.UnderlayDevice = p.underlayName
	o.DirectRouting = p.cfg.DirectRouting && p.underlayName != ""
	if !o.DirectRouting {
		return o
	}
	ns, err := kernel.OpenNS("")
	if err != nil {
		p.log.Warn("direct routing: cannot read the underlay's subnets; using the tunnel", "error", err)
		return o
	}
	defer ns.Close()
	have, err := kernel.Observe(ns, kernel.Scope{AddrLinks: []string{p.underlayName}})
	if err != nil {
		p.log.Warn("direct routing: cannot read the underlay's subnets; using the tunnel", "error", err)
		return o
	}
	for _, a := range have.Addrs {
		if a.Prefix.Bits() < a.Prefix.Addr().BitLen() { // a /32 or /128 connects no one
			o.Connected = append(o.Connected, netip.PrefixFrom(a.Prefix.Addr(), a.Prefix.Bits()))
		}
	}
	return o
}
