// Package flat is flatmesh's LAN bridge mode: it moves a host's LAN NIC into
// a Linux bridge that takes over the host's addresses and routes, so that
// containers plugged into the bridge sit on the host's own LAN segment, and
// it puts everything back on request or on failure.
//
// The switch-over is a transaction:
//
//  1. TakeSnapshot reads the NIC (link, every address, every route through it
//     in every table) and the bridge, as plain data (Snapshot).
//  2. Preflight refuses what cannot be done safely (missing, non-Ethernet,
//     wireless or foreign-enslaved NIC; a range outside the NIC's subnet or
//     over a host address; DHCP/SLAAC addresses; a NIC that NetworkManager
//     or systemd-networkd manages), before anything changes.
//  3. The original snapshot is written to StateDir/flat-original.json
//     (atomically) before the first change, in phase "switching".
//  4. PlanSwitch (pure) gives the ordered steps; they are applied one by one,
//     the record's steps_done updated after each; after the check below
//     the phase becomes "switched" (rollbacks and restores mark it
//     "restoring" first). A start that finds "switching" or "restoring" (a
//     run that died mid-change) never adopts the half-done bridge: it rolls
//     back to the record and switches over again, gateway check included.
//  5. The default gateway (or Options.ProbeAddr) must answer an ARP request
//     sent from the bridge within VerifyTimeout.
//  6. Any failure (a step, the verification, a cancelled context) rolls back
//     to the recorded snapshot with PlanRestore, best effort through every
//     step, and the returned error says what failed and whether the rollback
//     restored the snapshot exactly.
//
// Step order (PlanSwitch) keeps the host reachable throughout: the bridge is
// created with the NIC's MAC (so neighbours' ARP caches stay right), STP off
// and forward delay 0 (so the port forwards at once); the addresses are
// added to the bridge while the NIC still holds them; only then is the NIC
// enslaved (from that moment frames reach the bridge, which already owns the
// addresses); routes are appended on the bridge before the NIC's copies are
// deleted; the NIC's addresses go last, secondaries before primaries.
// PlanRestore runs the mirror image: addresses and routes back onto the NIC
// while it is still a port, release the NIC, delete the bridge. An IPv6
// address is added to its new device with IFA_F_NODAD (it is the host's own
// address, already unique on the segment; duplicate address detection would
// make it unusable for a second or more) and given back its recorded flags
// with a replace at the end, which does not start DAD. Measured on the veth
// lab: no IPv4 or IPv6 ping (every 50 ms) lost in a switch-over or restore.
//
// What moves: every address except IPv6 link-local ones (the bridge, having
// the NIC's MAC, derives the same link-local address itself; the NIC keeps
// its own), with flags, label (renamed to the bridge), broadcast, lifetimes
// and prefix-route metric (IFA_RT_PRIORITY); every route through the NIC
// except those the kernel derives from addresses (proto kernel) or learns
// from router advertisements (proto ra), with table, metric, protocol, scope,
// type, source, TOS, realm and metrics.
//
// Concurrency: SwitchOver and Restore change one NIC and must not run
// concurrently for the same NIC (the agent serialises them). ARP (the
// gateway check here, the agent's probe before handing out a LAN address)
// is package kernel's. The pure functions (Preflight,
// PlanSwitch, PlanRestore, Diff) are safe everywhere.
package flat
