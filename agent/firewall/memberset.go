package firewall

import (
	"fmt"
	"net/netip"
	"slices"
)

// The members' underlay addresses live in an ipset (hash:ip) per family,
// and the tunnel guard matches that set with one rule per port instead of
// one RETURN or ACCEPT rule per member. The guard runs for every received
// tunnel packet: with a rule per member its cost grew with the cluster (a
// lab with 50 members' rules in front of the peer's cut 2-stream VXLAN
// throughput from 0.87 to 0.72 of the hand-built path; with the set it
// stays at 0.87 for 50 members). A member joining or leaving is then one
// netlink set change, not an iptables-restore of the chain. The set is
// made before any rule that names it, and destroyed after the last one
// is gone (Remove, RemoveNoTrack).

// Names of the member sets (ipset names are one namespace-wide list, so
// each family needs its own).
const (
	MemberSet4 = "flatmesh-members"
	MemberSet6 = "flatmesh-members6"
)

// MemberSetName is the member set of family f.
func MemberSetName(f Family) string {
	if f == IPv6 {
		return MemberSet6
	}
	return MemberSet4
}

// memberMatch is the iptables match for "the source (dir "src") or the
// destination ("dst") is a member".
func memberMatch(f Family, dir string) string {
	return fmt.Sprintf("-m set --match-set %s %s", MemberSetName(f), dir)
}

// usesMemberSet reports whether o's rules name the member sets: they do
// wherever a tunnel port is guarded (the tunnel guard, and the members'
// NAT exemption and overlay accept).
func (o Options) usesMemberSet() bool { return len(tunnelPorts(o.TunnelPorts)) > 0 }

// memberAddrs are the members' addresses of family f, unmapped, sorted,
// without repeats.
func memberAddrs(members []netip.Addr, f Family) []netip.Addr {
	var out []netip.Addr
	for _, m := range members {
		if m = m.Unmap(); m.IsValid() && m.Is4() == (f == IPv4) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// setDiff returns what to add to and delete from have to make it want
// (both sorted, without repeats).
func setDiff(want, have []netip.Addr) (add, del []netip.Addr) {
	for _, a := range want {
		if _, ok := slices.BinarySearchFunc(have, a, netip.Addr.Compare); !ok {
			add = append(add, a)
		}
	}
	for _, a := range have {
		if _, ok := slices.BinarySearchFunc(want, a, netip.Addr.Compare); !ok {
			del = append(del, a)
		}
	}
	return add, del
}
