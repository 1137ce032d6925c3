package agent

import "github.com/flatmesh/flatmesh/overlay"

// checkWGDirect: in wireguard mode --direct-routing sends container
// traffic to same-subnet peers unencrypted, which defeats the reason the
// mode was chosen; it needs the explicit --wg-direct-cleartext too.
func (p *parser) checkWGDirect(c Config) {
	if c.Mode == overlay.ModeWireGuard && c.DirectRouting && !c.WGDirectCleartext {
		p.fail("direct_routing", "in wireguard mode direct routing sends container traffic to peers on the same subnet unencrypted; "+
			"set wg_direct_cleartext (--wg-direct-cleartext) too to allow cleartext on the LAN")
	}
}
