// Package firewall enables forwarding for container traffic and keeps
// flatmesh's own iptables chains in place, so bridged and routed container
// traffic passes even on a host where Docker set the FORWARD policy to DROP
// and br_netfilter sends bridged frames through iptables.
//
// What it installs, per address family (iptables; ip6tables only when
// Options.IPv6 is set):
//
//   - filter FLATMESH-FORWARD, jumped to from FORWARD at position 1. Every
//     accept is scoped to the cluster's addresses and our devices: from our
//     bridge with a cluster source; to our bridge with a cluster
//     destination, replies only (RELATED,ESTABLISHED); from the overlay
//     with a cluster or member-underlay source to a cluster destination.
//     Flat mode (Options.Flat: the bridge is the LAN NIC) accepts only
//     frames bridged (physdev) to or from a cluster address, so a LAN
//     machine routing through the host reaches none of its other networks
//     (Docker's unpublished containers) through our chain.
//   - filter FLATMESH-INPUT, jumped to from INPUT at position 1, when
//     Options.TunnelPorts is set: each UDP tunnel port (VXLAN, WireGuard) is
//     accepted from Options.Members' underlay addresses and dropped from
//     anyone else, so nobody outside the cluster injects frames. The
//     members are the ipset flatmesh-members (flatmesh-members6), one rule
//     per port matches it (memberset.go): the check costs the same for any
//     cluster size, and membership changes touch the set, not the rules.
//     Where the raw chain below does the same job (guard.go) this chain is
//     removed.
//   - raw FLATMESH-NOTRACK (PREROUTING) and FLATMESH-NOTRACK-OUT (OUTPUT):
//     cluster-to-cluster traffic and the tunnel's packets untracked
//     (notrack.go). For a port in TunnelPorts the PREROUTING chain also
//     does FLATMESH-INPUT's job before conntrack: members' packets leave
//     the chain untracked, anyone else's to a local address are dropped.
//   - nat FLATMESH-POSTROUTING, jumped to from POSTROUTING at position 1:
//     ACCEPT (which ends NAT processing, so no later MASQUERADE rule of
//     another program applies either) for traffic from a cluster CIDR to a
//     cluster CIDR, a NoNAT prefix or a member (the member set); then,
//     when Options.Masquerade is set, MASQUERADE for traffic from a
//     cluster CIDR leaving by any device but our bridge.
//   - sysctls: net.ipv4.ip_forward=1 (net.ipv6.conf.all.forwarding=1 with
//     IPv6), except in flat mode, which leaves them alone. The old value is
//     recorded in Options.StateFile and Remove puts it back. br_netfilter is
//     left as it is: Docker needs it.
//
// With Options.OnlyWhenNeeded (the agent sets it while it watches the
// ruleset with WatchChanges) a chain is installed only where it changes what
// the kernel does (need.go): FLATMESH-FORWARD only when FORWARD holds another
// rule or a non-ACCEPT policy, FLATMESH-POSTROUTING without masquerade only
// when POSTROUTING holds another rule, the notrack chains only where
// something uses connection tracking (asked of nf_tables over netlink,
// nftuse_linux.go: a nat table of user chains only hooks nothing, a native
// table such as firewalld's tracks too) and, carrying the tunnel guard,
// wherever FLATMESH-INPUT is not in place; FLATMESH-INPUT unless the raw
// chain guards the port. So with masquerade (a nat table) the guard lives in
// raw and filter INPUT runs nothing per packet; without any conntrack user
// it lives in filter INPUT and raw has no chain. One of the two is in place
// after every step of the agent's Ensure, EnsureNoTrack, Ensure. Chains not
// needed are removed. The jumps carry no "-m comment": iptables-nft runs it
// as an xtables match on every packet of the hook.
//
// Shape: Rules (pure) computes the chains; plan functions (pure) compare
// them with parsed iptables-save output and produce the smallest
// iptables-restore --noflush input; Ensure, Remove and Check (Linux) run the
// iptables binaries, inside Options.NetnsPath when set. A chain is always
// rewritten whole in one restore transaction (declaring it flushes it, the
// following lines refill it), so there is never a moment without rules; a
// chain that already holds exactly the desired rules is not touched at all,
// which keeps its counters and makes a second Ensure a no-op.
//
// The iptables binaries are the ones Docker uses (iptables-nft on Debian
// 12), so `iptables-save` shows users what flatmesh did. They come from the
// Debian package iptables.
package firewall
