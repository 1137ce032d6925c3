package main

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/flatmesh/flatmesh/agent/firewall"
	"github.com/flatmesh/flatmesh/deploy/lab"
)

// nsRefVXPM is the hand-built VXLAN path with flatmesh's rules whose tunnel
// guard lists every member in its own rule (path g, --fw-members).
const nsRefVXPM = "fbrm"

// With --fw-members N the firewall reference paths stand for a cluster of
// N members: (e)'s member set gets made-up addresses (198.18.0.0/15, the
// benchmarking range, never sent to) beside the two real hosts, and path
// (g) is (e) with the tunnel guard written as flatmesh wrote it before the
// member set: one RETURN (or ACCEPT) rule per member, the sending peer's
// last, its worst case. e/g is what the set saves per received tunnel
// packet at that size; e/b what the rules cost.

// growMemberSets adds made-up members to the member set of the first two
// hosts of topology prefix until it holds n (at least its real members).
func growMemberSets(prefix string, n int) error {
	t := topo{prefix: prefix}
	for i := 1; i <= 2; i++ {
		have, _, err := firewall.MemberSetAddrs(t.host(i), firewall.IPv4)
		if err != nil {
			return err
		}
		if err := firewall.SetMemberSet(t.host(i), firewall.IPv4, padMembers(have, n)); err != nil {
			return err
		}
	}
	return nil
}

// buildPerMemberRef builds path (g): (b) plus the lab's rules, the guard
// one rule per member for n members, the real peer last.
func (e *env) buildPerMemberRef(ctx context.Context, l *lab.Lab, mtu int, tx bool, rename map[string]string, n int) (benchPath, error) {
	g, err := e.buildVXLANRef(ctx, vxlanRef{MTU: mtu, TxChecksum: tx,
		refPath: refPath{Prefix: nsRefVXPM, Key: "g", Name: "hand-built-vxlan-firewall-per-member",
			Label: fmt.Sprintf("(e), %d members, rule each", n)}})
	if err == nil {
		err = e.copyLabFirewall(ctx, l, nsRefVXPM, rename)
	}
	t := topo{e: e, prefix: nsRefVXPM}
	for i := 1; i <= 2 && err == nil; i++ {
		var real []netip.Addr
		real, _, err = firewall.MemberSetAddrs(t.host(i), firewall.IPv4)
		if err != nil {
			break
		}
		var save []byte
		if save, err = nsExec(ctx, t.host(i), "iptables-save"); err == nil {
			_, err = commandInput(ctx, perMemberGuard(string(save), padMembers(real, n)), "ip", "netns", "exec", t.host(i), "iptables-restore")
		}
	}
	if err != nil {
		return g, fmt.Errorf("path (g), the guard one rule per member: %w", err)
	}
	return g, nil
}
