package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/flatmesh/flatmesh/agent/firewall"
)

// fakeMembers returns n made-up member addresses.
func fakeMembers(n int) []netip.Addr {
	out := make([]netip.Addr, 0, n)
	for i := range n {
		out = append(out, netip.AddrFrom4([4]byte{198, 18, byte(1 + i/250), byte(1 + i%250)}))
	}
	return out
}

// padMembers returns real preceded by made-up members up to n in all (the
// real ones last: the peer's rule is the last one a packet reaches).
func padMembers(real []netip.Addr, n int) []netip.Addr {
	if extra := n - len(real); extra > 0 {
		return append(fakeMembers(extra), real...)
	}
	return real
}

// perMemberGuard rewrites iptables-save output so that every rule naming
// the IPv4 member set becomes one rule per member (members in order).
func perMemberGuard(save string, members []netip.Addr) string {
	match := " -m set --match-set " + firewall.MemberSet4 + " src"
	var out []string
	for _, line := range strings.Split(save, "\n") {
		if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, match) {
			out = append(out, line)
			continue
		}
		chain, spec, _ := strings.Cut(strings.TrimPrefix(line, "-A "), " ")
		spec = strings.Replace(spec, match, "", 1)
		for _, m := range members {
			out = append(out, fmt.Sprintf("-A %s -s %s/32 %s", chain, m, spec))
		}
	}
	return strings.Join(out, "\n")
}
