package firewall

import (
	"fmt"
	"net/netip"
)

// overlayFastAccepts are the first rules of FLATMESH-FORWARD in the overlay
// modes: accepts for the two flows that carry nearly all container traffic,
// from our bridge to our overlay device (containers to peers' containers)
// and from the overlay to our bridge (peers' containers to ours). Each is a
// subset of an accept further down the chain (the same sources and
// destinations with an output device added), and that output is our own
// device, never a Docker bridge: they open nothing the chain did not, and
// the common packet stops after one or two rules instead of also walking the
// Docker returns and the rules before its own. On a Docker host that walk
// was the largest share of what separated flatmesh's vxlan path from a Swarm
// overlay in a whole-machine profile (docs/docker.md). Empty unless both
// devices are set and differ (flat mode has no overlay).
func overlayFastAccepts(o Options, cidrs []netip.Prefix) []string {
	if o.Flat || o.Bridge == "" || o.Overlay == "" || o.Overlay == o.Bridge {
		return nil
	}
	var out []string
	for _, p := range cidrs {
		out = append(out, fmt.Sprintf("-s %s -i %s -o %s -j ACCEPT", p, o.Bridge, o.Overlay))
	}
	for _, d := range cidrs {
		for _, s := range cidrs {
			out = append(out, fmt.Sprintf("-s %s -d %s -i %s -o %s -j ACCEPT", s, d, o.Overlay, o.Bridge))
		}
	}
	return out
}
