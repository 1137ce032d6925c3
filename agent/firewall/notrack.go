package firewall

import "fmt"

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
// The chains live apart from Rules' (EnsureNoTrack, RemoveNoTrack,
// CheckNoTrack), so programs that read Rules see what they always saw.

// Names of the raw-table chains.
const (
	NoTrackChain       = "FLATMESH-NOTRACK"     // jumped to from raw PREROUTING
	NoTrackOutputChain = "FLATMESH-NOTRACK-OUT" // jumped to from raw OUTPUT

	notrackComment = "flatmesh: cluster traffic untracked"
)

// NoTrackRules computes the raw-table chains (pure). It assumes o passed
// Validate; only ClusterCIDRs and IPv6 matter.
func NoTrackRules(o Options) Ruleset {
	rs := Ruleset{IPv4: noTrackChains(o, IPv4)}
	if o.IPv6 {
		rs.IPv6 = noTrackChains(o, IPv6)
	}
	return rs
}

func noTrackChains(o Options, f Family) []Chain {
	var rules []string
	cidrs := normalize(o.ClusterCIDRs, f)
	for _, s := range cidrs {
		for _, d := range cidrs {
			rules = append(rules, fmt.Sprintf("-s %s -d %s -j CT --notrack", s, d))
		}
	}
	return []Chain{
		{Table: "raw", Name: NoTrackChain, Hook: "PREROUTING", Jump: jumpSpec(notrackComment, NoTrackChain), Rules: rules},
		{Table: "raw", Name: NoTrackOutputChain, Hook: "OUTPUT", Jump: jumpSpec(notrackComment, NoTrackOutputChain), Rules: rules},
	}
}
