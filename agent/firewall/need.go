package firewall

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Which of flatmesh's chains a host needs (Options.OnlyWhenNeeded). Every
// chain costs time per packet: a netfilter hook the kernel calls and rules
// it evaluates (issue 13 measured about 3% of container throughput for the
// FORWARD chain and as much for the raw chains). A chain is skipped only
// where it provably changes nothing:
//
//   - FLATMESH-FORWARD holds ACCEPT and RETURN rules only. An ACCEPT in one
//     iptables chain overrides only what the same table's hook would do
//     after it; when FORWARD has no other rule and policy ACCEPT every
//     packet is accepted anyway, so the chain is not needed. Docker's DROP
//     policy or any other rule in FORWARD makes it needed. (A native
//     nftables table's drop is not overridden by any iptables ACCEPT, so it
//     plays no part.)
//   - FLATMESH-POSTROUTING without masquerade holds ACCEPTs that keep
//     another program's NAT rules off cluster traffic: needed only when nat
//     POSTROUTING holds another rule.
//   - The notrack chains save conntrack work only where something tracks
//     connections (a hooked nat chain, a state or conntrack match, a CT or
//     CONNMARK target, in any table, iptables' or native nftables', as
//     nf_tables reports them): without such a user the kernel does not
//     track at all and the raw chains would only cost.

// split returns the chains of want to install and those to remove, given
// the tables as they are. Without only every chain is installed.
func split(want []Chain, have saved, only bool) (keep, drop []Chain) {
	if !only {
		return want, nil
	}
	for _, c := range want {
		if c.neededIn(have) {
			keep = append(keep, c)
		} else {
			drop = append(drop, c)
		}
	}
	return keep, drop
}

// neededIn reports whether c changes what the kernel does with have's
// other rules in place.
func (c Chain) neededIn(have saved) bool {
	switch c.When {
	case HookBusy:
		return hookBusy(have.table(c.Table), c)
	case ConntrackInUse:
		return conntrackInUse(have)
	case NoRawGuard:
		return !rawGuardInPlace(have, c.Guard)
	case ConntrackOrGuard:
		return conntrackInUse(have) || !inputGuardInPlace(have)
	}
	return true
}

// hookBusy reports whether c's hook chain holds a rule other than a jump to
// c, or a policy other than ACCEPT.
func hookBusy(t *savedTable, c Chain) bool {
	if p, ok := t.chains[c.Hook]; ok && p != "ACCEPT" {
		return true
	}
	return slices.ContainsFunc(t.rules[c.Hook], func(r string) bool { return !isJumpTo(r, c.Name) })
}

// conntrackUses are the iptables matches (-m) and targets (-j) that use
// connection tracking.
var conntrackUses = map[string]bool{
	"conntrack": true, "state": true, "connmark": true, "connlimit": true, "connbytes": true,
	"connlabel": true, "helper": true, "cluster": true,
	"CT": true, "CONNMARK": true, "CONNSECMARK": true, "MASQUERADE": true, "SNAT": true, "DNAT": true,
	"REDIRECT": true, "NETMAP": true,
}

// nftUse is what nf_tables itself says makes the kernel track connections
// of one family (nftuse_linux.go reads it). iptables-save cannot say: it
// prints nat's built-in chains whenever a nat table exists, also when the
// table holds only user chains (Docker's DOCKER chain under --bridge=none)
// and so registers no hook, and it shows nothing of native nftables tables
// (firewalld's `ct state` rules track every packet).
type nftUse struct {
	natChain string // "family table chain" of a nat base chain; "" = none
	ctRule   string // "family table chain" of a rule using conntrack outside our notrack chains
}

// conntrackInUse reports whether something makes the kernel track
// connections (conntrackUser).
func conntrackInUse(have saved) bool { return conntrackUser(have) != "" }

// conntrackUser names what makes the kernel track connections, "" when
// nothing does: a nat base chain or a conntrack rule in nf_tables (when
// have.nft was read; without it, any nat table counts), an iptables rule
// outside the notrack chains that uses conntrack, or iptables-legacy tables
// (neither listing shows what they hold; Docker on a host switched to
// legacy keeps its nat table there). The agent logs it with every change
// of its chains, so an operator sees why the notrack chains are there.
func conntrackUser(have saved) string {
	if have.legacy {
		return "iptables-legacy tables"
	}
	if have.nft != nil {
		if have.nft.natChain != "" {
			return "nat chain " + have.nft.natChain
		}
		if have.nft.ctRule != "" {
			return "conntrack rule in " + have.nft.ctRule
		}
	} else if _, ok := have.tables["nat"]; ok {
		return "a nat table"
	}
	for _, name := range slices.Sorted(maps.Keys(have.tables)) {
		t := have.tables[name]
		for _, chain := range slices.Sorted(maps.Keys(t.rules)) {
			if name == "raw" && (chain == NoTrackChain || chain == NoTrackOutputChain) {
				continue
			}
			for _, r := range t.rules[chain] {
				if !isJumpTo(r, NoTrackChain) && !isJumpTo(r, NoTrackOutputChain) && usesConntrack(r) {
					return fmt.Sprintf("rule in %s %s", name, chain)
				}
			}
		}
	}
	return ""
}

func usesConntrack(spec string) bool {
	f := strings.Fields(spec)
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-m" || f[i] == "-j" || f[i] == "-g") && conntrackUses[f[i+1]] {
			return true
		}
	}
	return false
}

// planNeeded is planEnsure for the chains needed plus planRemove for those
// present but not needed.
func planNeeded(want []Chain, have saved, only bool) string {
	keep, drop := split(want, have, only)
	return planEnsure(keep, have) + planRemove(drop, have)
}

// problemsNeeded is problems for the chains needed, plus one line for each
// chain present that is not needed (Ensure removes it).
func problemsNeeded(f Family, want []Chain, have saved, only bool) []string {
	keep, drop := split(want, have, only)
	out := problems(f, keep, have)
	for _, c := range drop {
		if have.table(c.Table).has(c.Name) {
			out = append(out, fmt.Sprintf("%s: chain %s in table %s is present but changes nothing here", f, c.Name, c.Table))
		}
	}
	return out
}
