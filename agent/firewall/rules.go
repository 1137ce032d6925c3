package firewall

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// Names of the chains flatmesh owns. The jumps to them carry no comment:
// iptables-nft runs "-m comment" as an xtables match on every packet that
// reaches the hook (comment_mt showed up in the data path's profile); the
// chain names say who put them there.
const (
	ForwardChain     = "FLATMESH-FORWARD"
	PostroutingChain = "FLATMESH-POSTROUTING"
	InputChain       = "FLATMESH-INPUT"
)

// Options says what the firewall must let through and NAT.
type Options struct {
	// NetnsPath is the network namespace to program ("" = the current one).
	NetnsPath string
	// Bridge is the bridge containers are plugged into (may be empty).
	Bridge string
	// Overlay is the VXLAN or WireGuard device (may be empty).
	Overlay string
	// ClusterCIDRs is the container address space: sources that are
	// masqueraded when leaving the cluster, and destinations never NATed.
	ClusterCIDRs []netip.Prefix
	// NoNAT are further destinations that container traffic reaches by its
	// own address, never NATed (and sources accepted from the overlay).
	// Members are treated so through the member set wherever TunnelPorts
	// is set: list here only what is not a member.
	NoNAT []netip.Prefix
	// Masquerade NATs container traffic to destinations outside
	// ClusterCIDRs and NoNAT to the address of the leaving interface.
	Masquerade bool
	// Flat says the bridge is the LAN NIC (flat mode): only frames bridged
	// to or from ClusterCIDRs are accepted (physdev), never traffic routed
	// between the LAN and the host's other networks, and the forwarding
	// sysctls are left as they are.
	Flat bool
	// Direct, with direct routing, is the underlay NIC on which peers'
	// containers arrive unencapsulated: cluster-to-cluster traffic from it
	// to the bridge is accepted (untracked, so no conntrack state to match).
	Direct string
	// TunnelPorts are UDP ports (VXLAN, WireGuard) that only Members may
	// send to: FLATMESH-INPUT (or the raw guard) accepts them from the
	// member set (ipset flatmesh-members, memberset.go) and drops them
	// from anyone else.
	TunnelPorts []uint16
	// TunnelLocal is this host's underlay address, where the tunnel's
	// packets arrive: the notrack rule for them matches it instead of
	// asking the routing table whether the destination is local (a route
	// lookup per received tunnel packet). Unset: the route lookup.
	TunnelLocal netip.Addr
	// Members are the underlay addresses of the cluster's members (kept
	// current by the caller as members come and go): the only sources the
	// tunnel ports accept, and, like NoNAT, destinations never NATed and
	// sources accepted from the overlay. They are the member set's
	// contents (memberset.go), not rules: a change rewrites no chain.
	Members []netip.Addr
	// StateFile, when set, is where Ensure records the sysctls it changed
	// and their old values, so Remove puts them back.
	StateFile string
	// OnlyWhenNeeded installs the chains whose When is not Always only
	// where they change what the kernel does (and removes them where they
	// do not): the FORWARD accepts only when FORWARD has other rules or a
	// DROP policy (Docker's), the NAT exemptions without masquerade only
	// when POSTROUTING has other rules, the notrack chains only when
	// something uses connection tracking. Every rule costs time per packet
	// (issue 13). The caller must run Ensure again when another program
	// changes the tables (WatchChanges), or a later DROP policy drops
	// container traffic until it does.
	OnlyWhenNeeded bool
	// IPv6 also enables IPv6 forwarding and manages ip6tables chains.
	// Without it IPv6 prefixes in ClusterCIDRs and NoNAT are ignored and
	// ip6tables is not touched by Ensure.
	IPv6 bool
	// Logger may be nil.
	Logger hclog.Logger
}

// Validate checks the interface names and prefixes.
func (o Options) Validate() error {
	for _, d := range []struct{ what, name string }{{"bridge", o.Bridge}, {"overlay", o.Overlay}, {"direct device", o.Direct}} {
		if d.name == "" {
			continue
		}
		if err := kernel.ValidateIfName(d.name); err != nil {
			return fmt.Errorf("firewall %s: %w", d.what, err)
		}
		// iptables reads '+' as a wildcard; quotes and '!' confuse
		// iptables-restore's parser.
		if i := strings.IndexAny(d.name, `+!"'\#`); i >= 0 {
			return fmt.Errorf("firewall %s: interface name %q contains %q, which iptables treats specially",
				d.what, d.name, d.name[i])
		}
	}
	for _, l := range []struct {
		what string
		ps   []netip.Prefix
	}{{"cluster cidr", o.ClusterCIDRs}, {"no-nat prefix", o.NoNAT}} {
		for _, p := range l.ps {
			if !p.IsValid() {
				return fmt.Errorf("firewall %s: invalid prefix %v", l.what, p)
			}
			if p.Addr().Is4In6() {
				return fmt.Errorf("firewall %s %s: IPv4-mapped IPv6 prefixes are not supported; write it as IPv4", l.what, p)
			}
		}
	}
	if o.TunnelLocal.IsValid() && o.TunnelLocal.Is4In6() {
		return fmt.Errorf("firewall tunnel local address %s: IPv4-mapped; write it as IPv4", o.TunnelLocal)
	}
	return nil
}

func (o Options) logger() hclog.Logger {
	if o.Logger == nil {
		return hclog.NewNullLogger()
	}
	return o.Logger
}

// Family is an address family: which iptables binaries and prefixes apply.
type Family int

// The families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String names the family's iptables command ("iptables", "ip6tables").
func (f Family) String() string {
	if f == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// Chain is one chain flatmesh owns: its table, the built-in chain that must
// jump to it first, the jump rule and the rules it holds, in order. Rules and
// Jump are written exactly as iptables-save prints them (without "-A NAME"),
// so comparing with the kernel's state is a string comparison.
type Chain struct {
	Table string // "filter" or "nat"
	Name  string
	Hook  string // built-in chain holding the jump, as its first rule
	Jump  string
	Rules []string
	// When says whether the chain is installed always or only where it
	// changes what the kernel does (Options.OnlyWhenNeeded); a chain not
	// needed is removed if present.
	When Condition
	// Guard, for a chain that keeps strangers off the tunnel ports (the
	// filter INPUT chain, the raw PREROUTING chain), is the raw-table rules
	// that do the same job before connection tracking (guardRules): with
	// them in place the filter chain is not needed.
	Guard []string
}

// Condition is when a chain is needed.
type Condition int

// The conditions.
const (
	// Always: the chain is always installed.
	Always Condition = iota
	// HookBusy: the chain holds only ACCEPT and RETURN rules, so it
	// changes nothing when its hook has no other rule and an ACCEPT policy
	// (every packet is accepted anyway). Docker's FORWARD DROP, or any
	// other rule in the hook, makes it needed.
	HookBusy
	// ConntrackInUse: the chain (notrack) saves work only when something
	// in the namespace's ruleset uses connection tracking (a hooked nat
	// chain, a state match, a native nftables ct rule); without such a
	// user the kernel tracks nothing anyway.
	ConntrackInUse
	// NoRawGuard: the chain (FLATMESH-INPUT) is needed unless raw
	// PREROUTING jumps first to FLATMESH-NOTRACK and that chain starts
	// with Guard, which drops the same packets earlier (the filter table's
	// INPUT hook and its rules then cost nothing per packet).
	NoRawGuard
	// ConntrackOrGuard: the chain (FLATMESH-NOTRACK carrying Guard) is
	// needed where something uses connection tracking, and also wherever
	// FLATMESH-INPUT is not in place, so one of the two always keeps
	// strangers off the tunnel ports (whichever order Ensure and
	// EnsureNoTrack run in).
	ConntrackOrGuard
)

// Ruleset is the desired state of every chain flatmesh owns.
type Ruleset struct {
	IPv4 []Chain
	IPv6 []Chain // nil unless Options.IPv6
}

// Chains returns the chains of one family.
func (r Ruleset) Chains(f Family) []Chain {
	if f == IPv6 {
		return r.IPv6
	}
	return r.IPv4
}

// Text is the input for `iptables-restore --noflush` (ip6tables-restore for
// IPv6) that installs the family's chains on a host that has none of them:
// each chain declared (which creates or flushes it) and filled, and the jump
// inserted at position 1. Ensure sends only the part that differs from what
// the kernel has. Empty when the family has no chains.
func (r Ruleset) Text(f Family) string {
	return planEnsure(r.Chains(f), saved{})
}

// Rules computes the desired chains (pure). It assumes o passed Validate;
// invalid prefixes are skipped.
func Rules(o Options) Ruleset {
	rs := Ruleset{IPv4: familyChains(o, IPv4)}
	if o.IPv6 {
		rs.IPv6 = familyChains(o, IPv6)
	}
	return rs
}

func familyChains(o Options, f Family) []Chain {
	out := []Chain{forwardChain(o, f), natChain(o, f)}
	if len(o.TunnelPorts) > 0 {
		out = append(out, inputChain(o, f))
	}
	return out
}

// allChains names every chain flatmesh may own (for Remove).
func allChains() []Chain {
	return []Chain{
		{Table: "filter", Name: ForwardChain, Hook: "FORWARD"},
		{Table: "nat", Name: PostroutingChain, Hook: "POSTROUTING"},
		{Table: "filter", Name: InputChain, Hook: "INPUT"},
	}
}

// forwardChain accepts container traffic only, scoped to the cluster's
// addresses and our devices (nothing else in or out of them):
//   - from our bridge, sources in the cluster CIDRs (containers going
//     anywhere; NAT decides how they leave);
//   - to our bridge, cluster destinations, replies only (RELATED,
//     ESTABLISHED): nobody outside opens a connection to a container;
//   - from the overlay, cluster or member-underlay sources to cluster
//     destinations (peers' containers and hosts);
//   - flat mode: frames bridged (physdev) to or from a cluster address,
//     never anything routed between the LAN and other networks.
func forwardChain(o Options, f Family) Chain {
	c := Chain{Table: "filter", Name: ForwardChain, Hook: "FORWARD", Jump: jumpSpec(ForwardChain), When: HookBusy}
	cidrs := normalize(o.ClusterCIDRs, f)
	if o.Flat {
		if o.Bridge == "" {
			return c
		}
		bridged := fmt.Sprintf("-i %s -o %s -m physdev --physdev-is-bridged -j ACCEPT", o.Bridge, o.Bridge)
		for _, p := range cidrs {
			c.Rules = append(c.Rules, fmt.Sprintf("-s %s %s", p, bridged), fmt.Sprintf("-d %s %s", p, bridged))
		}
		return c
	}
	c.Rules = append(c.Rules, overlayFastAccepts(o, cidrs)...) // forward_fast.go
	if len(cidrs) > 0 {
		c.Rules = append(c.Rules, dockerReturns(o)...)
	}
	if o.Bridge != "" {
		for _, p := range cidrs {
			c.Rules = append(c.Rules, fmt.Sprintf("-s %s -i %s -j ACCEPT", p, o.Bridge))
		}
		for _, p := range cidrs {
			c.Rules = append(c.Rules, fmt.Sprintf("-d %s -o %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", p, o.Bridge))
		}
	}
	if o.Direct != "" && o.Bridge != "" {
		for _, d := range cidrs {
			for _, s := range cidrs {
				c.Rules = append(c.Rules, fmt.Sprintf("-s %s -d %s -i %s -o %s -j ACCEPT", s, d, o.Direct, o.Bridge))
			}
		}
	}
	if o.Overlay != "" && o.Overlay != o.Bridge {
		srcs := normalize(append(slices.Clone(o.ClusterCIDRs), o.NoNAT...), f)
		for _, d := range cidrs {
			for _, s := range srcs {
				c.Rules = append(c.Rules, fmt.Sprintf("-s %s -d %s -i %s -j ACCEPT", s, d, o.Overlay))
			}
			if o.usesMemberSet() {
				c.Rules = append(c.Rules, fmt.Sprintf("-d %s -i %s %s -j ACCEPT", d, o.Overlay, memberMatch(f, "src")))
			}
		}
	}
	return c
}

// dockerReturns hands traffic towards Docker's bridges (docker0, br-<id> of
// user networks) back to FORWARD, where Docker's chains accept only what
// Docker publishes: flatmesh's accepts never open a Docker network to the
// cluster. (Unless flatmesh's own device is named like one of them.)
func dockerReturns(o Options) []string {
	var out []string
	if o.Bridge != "docker0" && o.Overlay != "docker0" {
		out = append(out, "-o docker0 -j RETURN")
	}
	if !strings.HasPrefix(o.Bridge, "br-") && !strings.HasPrefix(o.Overlay, "br-") {
		out = append(out, "-o br-+ -j RETURN")
	}
	return out
}

// inputChain accepts the tunnel ports from members (the member set) only.
func inputChain(o Options, f Family) Chain {
	c := Chain{Table: "filter", Name: InputChain, Hook: "INPUT", Jump: jumpSpec(InputChain), When: NoRawGuard,
		Guard: guardRules(o, f, o.TunnelPorts)}
	for _, port := range tunnelPorts(o.TunnelPorts) {
		c.Rules = append(c.Rules, fmt.Sprintf("-p udp -m udp --dport %d %s -j ACCEPT", port, memberMatch(f, "src")),
			fmt.Sprintf("-p udp -m udp --dport %d -j DROP", port))
	}
	return c
}

func natChain(o Options, f Family) Chain {
	nat := Chain{
		Table: "nat", Name: PostroutingChain, Hook: "POSTROUTING",
		Jump: jumpSpec(PostroutingChain),
	}
	if !o.Masquerade {
		nat.When = HookBusy // only ACCEPTs: they matter only before another program's NAT rules
	}
	srcs := normalize(o.ClusterCIDRs, f)
	dsts := normalize(append(slices.Clone(o.ClusterCIDRs), o.NoNAT...), f)
	for _, s := range srcs {
		for _, d := range dsts {
			nat.Rules = append(nat.Rules, fmt.Sprintf("-s %s -d %s -j ACCEPT", s, d))
		}
		if o.usesMemberSet() {
			nat.Rules = append(nat.Rules, fmt.Sprintf("-s %s %s -j ACCEPT", s, memberMatch(f, "dst")))
		}
	}
	if o.Masquerade {
		for _, s := range srcs {
			if o.Bridge != "" {
				nat.Rules = append(nat.Rules, fmt.Sprintf("-s %s ! -o %s -j MASQUERADE", s, o.Bridge))
			} else {
				nat.Rules = append(nat.Rules, fmt.Sprintf("-s %s -j MASQUERADE", s))
			}
		}
	}
	return nat
}

func jumpSpec(chain string) string { return "-j " + chain }

// normalize keeps the valid prefixes of family f, masked, drops those another
// one covers, and sorts them, so the rules do not change with input order.
func normalize(ps []netip.Prefix, f Family) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if !p.IsValid() || p.Addr().Is4In6() || p.Addr().Is4() != (f == IPv4) {
			continue
		}
		out = append(out, p.Masked())
	}
	// Wider prefixes first, so a covering prefix is kept before the ones
	// it covers.
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(cmp.Compare(a.Bits(), b.Bits()), a.Addr().Compare(b.Addr()))
	})
	var kept []netip.Prefix
	for _, p := range out {
		if !slices.ContainsFunc(kept, func(k netip.Prefix) bool { return k.Contains(p.Addr()) }) {
			kept = append(kept, p)
		}
	}
	slices.SortFunc(kept, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return kept
}

// Addrs returns the addresses of host prefixes (members' underlays given as
// /32 or /128), for Options.Members.
func Addrs(ps []netip.Prefix) []netip.Addr {
	out := make([]netip.Addr, 0, len(ps))
	for _, p := range ps {
		if p.IsValid() {
			out = append(out, p.Addr())
		}
	}
	return out
}
