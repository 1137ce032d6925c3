package firewall

import (
	"fmt"
	"slices"
	"strconv"
)

// Cluster-internal traffic skips connection tracking (Cilium's no-conntrack
// rules are the precedent): in the raw table, packets whose source and
// destination both lie in a cluster CIDR are marked untracked, in
// PREROUTING (forwarded and incoming: container to container, container to
// host) and OUTPUT (host to container). Everything else (container traffic
// leaving the cluster, which must be masqueraded) is still tracked.
//
// Untracked packets match no --ctstate ESTABLISHED rule and skip the nat
// table. Our FORWARD accepts match interfaces only, so they let untracked
// packets through even under Docker's FORWARD DROP; a host INPUT policy
// that accepts only ESTABLISHED replies would drop the replies of untracked
// host-to-container flows (say so in the docs). Cluster-internal traffic
// is never NATed anyway (the nat chain accepts it first).
//
// With a tunnel port (VXLAN's UDP port), the tunnel's own packets to and
// from this host are untracked too: every inner flow hashes to its own
// outer source port, so tracking them filled the table with UNREPLIED
// entries and cost a lookup per packet. Nothing accepts them by state.
//
// The chains live apart from Rules' (EnsureNoTrack, RemoveNoTrack,
// CheckNoTrack), so programs that read Rules see what they always saw.

// Names of the raw-table chains.
const (
	NoTrackChain       = "FLATMESH-NOTRACK"     // jumped to from raw PREROUTING
	NoTrackOutputChain = "FLATMESH-NOTRACK-OUT" // jumped to from raw OUTPUT
)

// NoTrackRules computes the raw-table chains (pure). It assumes o passed
// Validate; only ClusterCIDRs, TunnelLocal and IPv6 matter. tunnelPort is the UDP port
// of the tunnel whose own packets skip tracking too (0: none).
func NoTrackRules(o Options, tunnelPort int) Ruleset {
	rs := Ruleset{IPv4: noTrackChains(o, IPv4, tunnelPort)}
	if o.IPv6 {
		rs.IPv6 = noTrackChains(o, IPv6, tunnelPort)
	}
	return rs
}

func noTrackChains(o Options, f Family, tunnelPort int) []Chain {
	var pre, out []string
	cidrs := normalize(o.ClusterCIDRs, f)
	for _, s := range cidrs {
		for _, d := range cidrs {
			r := fmt.Sprintf("-s %s -d %s -j CT --notrack", s, d)
			pre, out = append(pre, r), append(out, r)
		}
	}
	var guard []string
	if tunnelPort > 0 && tunnelPort < 65536 {
		// First in PREROUTING: received tunnel packets are the most
		// numerous there (each outer packet is seen apart, the inner ones
		// after decapsulation are merged by GRO).
		p := strconv.Itoa(tunnelPort)
		first := []string{tunnelNotrack(o, f, uint16(tunnelPort))}
		if slices.Contains(o.TunnelPorts, uint16(tunnelPort)) {
			// A port only members may use (FLATMESH-INPUT's job): the
			// members' packets are untracked and strangers' dropped here,
			// before conntrack, so filter INPUT needs no chain
			// (NoRawGuard).
			guard = guardRules(o, f, []uint16{uint16(tunnelPort)})
			first = guard
		}
		pre = append(slices.Clone(first), pre...)
		out = append([]string{"-p udp -m udp --dport " + p + " -j CT --notrack"}, out...)
	}
	when := ConntrackInUse
	if len(guard) > 0 {
		when = ConntrackOrGuard
	}
	return []Chain{
		{Table: "raw", Name: NoTrackChain, Hook: "PREROUTING", Jump: jumpSpec(NoTrackChain), Rules: pre,
			When: when, Guard: guard},
		{Table: "raw", Name: NoTrackOutputChain, Hook: "OUTPUT", Jump: jumpSpec(NoTrackOutputChain), Rules: out,
			When: ConntrackInUse},
	}
}
