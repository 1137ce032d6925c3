// Package kernel is the one home for the netlink helpers every flatmesh data
// plane uses: network namespaces (ResolveNetns, OpenNS, InNetns), links
// (EnsureBridge, CreateBridge, EnsureVXLAN, CreateVeth, DeleteLink,
// LinkWithAddr, WaitOperUp, IsNotFound), the generic reconcile of addresses,
// neighbours, FDB entries and routes (State, Diff, Plan, Observe, ApplyPlan,
// Reconcile), sysctls (SysctlAt, SetSysctlAt, NS.SetSysctl), a netlink watch
// that wakes a reconcile loop (Watch), ARP on github.com/mdlayher/arp and
// github.com/mdlayher/packet (ARPProbe, ARPAnnounce, ARPResolve,
// SendGratuitousARP, ListenARP) and the ethtool tx-checksum switch
// (NS.SetTxChecksum: two SIOCETHTOOL ioctls, kept in house, see
// ethtool_linux.go).
//
// Shape: the value types (Addr, Route, Neigh, FDB, State, Plan, Scope,
// BridgeSpec, VXLANSpec, MAC) and Diff are pure and portable; everything that
// talks to the kernel lives in _linux.go files and takes an *NS, a netlink
// handle bound to one network namespace, so callers never switch the
// namespace of their own goroutine.
//
// Ownership: flatmesh only ever changes objects it owns. A Scope names the
// links whose addresses, permanent neighbours and FDB entries are ours, and
// the links through which routes tagged with RouteProtocol are ours. Nothing
// outside a Scope is read for deletion or changed.
//
// Apply order: links first (Ensure*), then addresses, neighbours and FDB
// entries, routes last; additions and replacements before deletions;
// replacement instead of delete+add; EEXIST on add and ENOENT/ESRCH on delete
// count as success. A second Reconcile with nothing changed plans nothing.
// Deleting an IPv4 address first turns on promote_secondaries for its link,
// so a same-subnet address added just before survives the delete.
package kernel

// RouteProtocol is the rtm_protocol number flatmesh stamps on every route it
// installs (0x5f = 95, unassigned in iproute2's rt_protos). It is how the
// agent recognises its own routes after a restart and how an operator finds
// them: `ip route show proto 95` (add "95 flatmesh" to
// /etc/iproute2/rt_protos.d/flatmesh.conf to see the name instead).
const RouteProtocol = 0x5f

// MaxIfNameLen is the longest interface name Linux accepts (IFNAMSIZ - 1).
const MaxIfNameLen = 15
