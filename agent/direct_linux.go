package agent

import (
	"github.com/hashicorp/go-hclog"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/overlay"
)

// directOptions are an overlay plane's direct-routing options: the
// underlay link's name (always, so that its proto-95 routes are withdrawn
// when the setting is off) and, when on, the subnets of the addresses on
// it, read now (an address added or removed shows at the next pass). A
// failed read leaves Connected empty: every peer keeps the tunnel.
func directOptions(log hclog.Logger, on bool, underlay string) overlay.Direct {
	d := overlay.Direct{UnderlayDevice: underlay, DirectRouting: on && underlay != ""}
	if !d.DirectRouting {
		return d
	}
	ns, err := kernel.OpenNS("")
	if err != nil {
		log.Warn("direct routing: cannot read the underlay's subnets; using the tunnel", "error", err)
		return d
	}
	defer ns.Close()
	have, err := kernel.Observe(ns, kernel.Scope{AddrLinks: []string{underlay}})
	if err != nil {
		log.Warn("direct routing: cannot read the underlay's subnets; using the tunnel", "error", err)
		return d
	}
	d.Connected = kernel.Connected(have.Addrs)
	return d
}
