package firewall

import (
	"fmt"
	"net/netip"
	"slices"
)

// The tunnel guard: a tunnel port (VXLAN, WireGuard) is accepted only from
// members' underlay addresses. filter FLATMESH-INPUT did that alone; every
// received outer packet then ran the filter table's INPUT hook and its rules
// on top of the raw and conntrack hooks (the profile of issue 13's data
// path). Where the raw chain FLATMESH-NOTRACK is installed anyway (something
// uses conntrack: masquerade), it carries the same check before conntrack
// and FLATMESH-INPUT goes (Chain.Guard, conditions NoRawGuard and
// ConntrackOrGuard); elsewhere FLATMESH-INPUT stays and raw has no chain.

// guardRules are the raw PREROUTING rules that keep strangers off the
// tunnel ports before connection tracking: every packet to the port for
// this host's address (TunnelLocal; without it any local address, a route
// lookup) is untracked (CT does not end the chain), members' packets (the
// member set, memberset.go) then leave the chain (RETURN), and what is
// left for a local address is dropped. Forwarded packets to the port (this
// host as a router) are left alone, as filter INPUT does.
func guardRules(o Options, f Family, ports []uint16) []string {
	var out []string
	for _, port := range tunnelPorts(ports) {
		out = append(out, tunnelNotrack(o, f, port),
			fmt.Sprintf("-p udp -m udp --dport %d %s -j RETURN", port, memberMatch(f, "src")),
			fmt.Sprintf("-p udp -m udp --dport %d -m addrtype --dst-type LOCAL -j DROP", port))
	}
	return out
}

// tunnelNotrack is the raw PREROUTING rule that untracks the tunnel's
// packets to this host: matched by this host's address (TunnelLocal) when
// it has one of family f, else by a route lookup (any local address).
func tunnelNotrack(o Options, f Family, port uint16) string {
	if l := o.TunnelLocal; l.IsValid() && l.Is4() == (f == IPv4) {
		return fmt.Sprintf("-d %s -p udp -m udp --dport %d -j CT --notrack", netip.PrefixFrom(l, l.BitLen()), port)
	}
	return fmt.Sprintf("-p udp -m udp --dport %d -m addrtype --dst-type LOCAL -j CT --notrack", port)
}

// rawGuardInPlace reports whether raw PREROUTING jumps first to
// FLATMESH-NOTRACK and that chain starts with guard (a non-empty list).
func rawGuardInPlace(have saved, guard []string) bool {
	t := have.table("raw")
	if len(guard) == 0 || !t.jumpOK(Chain{Hook: "PREROUTING", Name: NoTrackChain, Jump: jumpSpec(NoTrackChain)}) {
		return false
	}
	rules := t.rules[NoTrackChain]
	return len(rules) >= len(guard) && slices.Equal(rules[:len(guard)], guard)
}

// inputGuardInPlace reports whether filter INPUT jumps first to
// FLATMESH-INPUT (whose rules Ensure keeps current).
func inputGuardInPlace(have saved) bool {
	t := have.table("filter")
	return t.has(InputChain) && t.jumpOK(Chain{Hook: "INPUT", Name: InputChain, Jump: jumpSpec(InputChain)})
}

// tunnelPorts returns the non-zero ports, sorted, without repeats.
func tunnelPorts(ps []uint16) []uint16 {
	ports := slices.Clone(ps)
	slices.Sort(ports)
	return slices.DeleteFunc(slices.Compact(ports), func(p uint16) bool { return p == 0 })
}
