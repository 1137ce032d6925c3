// Package vxlan is the VXLAN data plane: one VXLAN link per host, no
// multicast and no learning; for every block a live peer owns, a static FDB
// entry (peer VTEP MAC -> peer underlay address), a permanent neighbour
// (peer block gateway -> peer VTEP MAC) and an on-link route (block via
// peer block gateway, dev VXLAN link, src our own gateway). Desired is pure;
// Apply (Linux) puts a State into the kernel with internal/kernel.
package vxlan

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/overlay"
)

// Defaults (docs/architecture.md).
const (
	DefaultDevice = "flatmesh.vx"
	DefaultVNI    = 4213
	DefaultPort   = 4789
)

// Node is a host as the VXLAN plane sees it: the agent builds one from a
// cluster.Peer plus the blocks IPAM says it owns.
type Node struct {
	Name     string
	Underlay netip.Addr       // VTEP address (encapsulated packets come from/go to it)
	VTEPMAC  net.HardwareAddr // MAC of its VXLAN link; nil for self = VTEPMAC(Underlay)
	Blocks   []netip.Prefix   // overlay blocks it owns
	// Direct says the peer accepts direct routing (it gossips the flag);
	// only such peers are routed to without the tunnel.
	Direct bool
}

// Options configure the plane; zero values take the defaults.
type Options struct {
	Device            string           // VXLAN link name, default DefaultDevice
	VNI               int              // default DefaultVNI
	Port              int              // UDP port, default DefaultPort
	Bridge            string           // local bridge, default overlay.DefaultBridge
	BridgeMAC         net.HardwareAddr // nil = overlay.BridgeMAC(self.Underlay)
	MTU               int              // overlay MTU (overlay.ResolveMTU); required
	UnderlayIndex     int              // bind the VXLAN link to this underlay link; 0 = none
	TxChecksumOffload bool             // false (default) turns tx checksum offload off on the VXLAN link
	// Direct routing (overlay.Direct, direct.go): same-subnet peers get
	// plain routes via their underlay address instead of VXLAN entries.
	overlay.Direct
}

// State is the desired kernel state of one host.
type State struct {
	Bridge            overlay.Bridge
	Device            kernel.VXLANSpec
	TxChecksumOffload bool
	Objects           kernel.State // bridge addresses; neighbours, FDB and routes on the VXLAN link
	Skipped           []string     // peers or blocks left out, and why (for the log)
	UnderlayDevice    string       // routes of direct peers go out here (Options.UnderlayDevice)
	Direct            []string     // peers routed directly, by name, sorted
}

// VTEPMAC is the deterministic MAC of a host's VXLAN link, derived from its
// underlay address (overlay.DeriveMAC with overlay.MACKindVTEP).
func VTEPMAC(underlay netip.Addr) net.HardwareAddr {
	return overlay.DeriveMAC(overlay.MACKindVTEP, underlay)
}

// Scope is everything the plane owns, for kernel.Reconcile and Observe.
func (s State) Scope() kernel.Scope {
	return kernel.Scope{
		AddrLinks:  []string{s.Bridge.Spec.Name},
		NeighLinks: []string{s.Device.Name},
		FDBLinks:   []string{s.Device.Name},
		RouteLinks: s.routeLinks(),
	}
}

func (o Options) withDefaults(self Node) Options {
	o.Device = cmp.Or(o.Device, DefaultDevice)
	o.VNI = cmp.Or(o.VNI, DefaultVNI)
	o.Port = cmp.Or(o.Port, DefaultPort)
	o.Bridge = cmp.Or(o.Bridge, overlay.DefaultBridge)
	if o.BridgeMAC == nil {
		o.BridgeMAC = overlay.BridgeMAC(self.Underlay)
	}
	return o
}

// Desired computes the host's VXLAN state from itself and the live peers
// (the agent passes only alive ones: a dead peer is absent, so its entries
// are withdrawn). It is pure and deterministic: peer order does not matter.
// Peers without blocks, without a usable VTEP MAC or underlay address, or
// clashing with self or an earlier peer (by name) are skipped and listed
// in State.Skipped; so are blocks that overlap our own or a block already
// taken. It fails only on a bad self or bad options.
func Desired(self Node, peers []Node, opts Options) (State, error) {
	if !self.Underlay.IsValid() {
		return State{}, fmt.Errorf("vxlan: self %q has no underlay address", self.Name)
	}
	self.Underlay = self.Underlay.Unmap()
	if self.VTEPMAC == nil {
		self.VTEPMAC = VTEPMAC(self.Underlay)
	}
	selfMAC, err := kernel.MACFrom(self.VTEPMAC)
	if err != nil {
		return State{}, fmt.Errorf("vxlan: self vtep mac: %w", err)
	}
	opts = opts.withDefaults(self)
	if opts.MTU <= 0 {
		return State{}, fmt.Errorf("vxlan: mtu not set (compute it with overlay.ResolveMTU)")
	}
	br, err := overlay.DesiredBridge(overlay.BridgeOptions{Name: opts.Bridge, MTU: opts.MTU, MAC: opts.BridgeMAC, Blocks: self.Blocks})
	if err != nil {
		return State{}, fmt.Errorf("vxlan: %w", err)
	}
	st := State{
		Bridge: br,
		Device: kernel.VXLANSpec{Name: opts.Device, VNI: opts.VNI, Port: opts.Port, Local: self.Underlay,
			ParentIndex: opts.UnderlayIndex, MTU: opts.MTU, MAC: selfMAC.HardwareAddr()},
		TxChecksumOffload: opts.TxChecksumOffload,
		UnderlayDevice:    opts.UnderlayDevice,
	}
	if err := opts.checkDirect(); err != nil {
		return State{}, err
	}
	if err := st.Device.Validate(); err != nil {
		return State{}, err
	}
	st.Objects.Addrs = append(st.Objects.Addrs, br.Addrs...)
	p := planner{st: &st, self: self, opts: opts, macs: map[kernel.MAC]string{selfMAC: self.Name},
		claims: overlay.NewClaims(self.Name, self.Underlay, br.Blocks())}
	sorted := slices.Clone(peers)
	slices.SortFunc(sorted, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	for _, peer := range sorted {
		p.addPeer(peer)
	}
	return st, nil
}

// planner accumulates per-peer entries while remembering what is taken.
type planner struct {
	st     *State
	self   Node
	opts   Options
	claims *overlay.Claims
	macs   map[kernel.MAC]string
}

func (p *planner) skip(format string, args ...any) {
	p.st.Skipped = append(p.st.Skipped, fmt.Sprintf(format, args...))
}

func (p *planner) addPeer(peer Node) {
	if peer.Name == p.self.Name {
		return
	}
	under := peer.Underlay.Unmap()
	mac, macErr := kernel.MACFrom(peer.VTEPMAC)
	switch {
	case len(peer.Blocks) == 0:
		return // nothing to route to; not worth a log line
	case peer.VTEPMAC == nil:
		p.skip("peer %s: no vtep mac", peer.Name)
		return
	case macErr != nil || mac.IsZero() || mac[0]&1 != 0:
		p.skip("peer %s: vtep mac %s is not a unicast Ethernet address", peer.Name, peer.VTEPMAC)
		return
	case p.claims.UnderlayProblem(under) != "":
		p.skip("peer %s: %s", peer.Name, p.claims.UnderlayProblem(under))
		return
	case p.macs[mac] != "":
		p.skip("peer %s: vtep mac %s already used by %s", peer.Name, mac, p.macs[mac])
		return
	}
	if peer.Direct && p.opts.Reaches(under) {
		p.addDirect(peer, under)
		return
	}
	dev := p.st.Device.Name
	blocks := p.claim(peer)
	for _, blk := range blocks {
		gw, _ := overlay.Gateway(blk) // claim checked it
		p.st.Objects.Neighs = append(p.st.Objects.Neighs, kernel.Neigh{Dev: dev, IP: gw, MAC: mac})
		p.st.Objects.Routes = append(p.st.Objects.Routes, kernel.Route{Dst: blk, Gw: gw, Dev: dev, OnLink: true,
			Src: p.st.Bridge.FirstGateway(gw.Is4())})
	}
	if len(blocks) > 0 {
		p.st.Objects.FDB = append(p.st.Objects.FDB, kernel.FDB{Dev: dev, MAC: mac, Dst: under})
		p.macs[mac] = peer.Name
		p.claims.ClaimUnderlay(under, peer.Name)
	}
}

// claim returns peer's usable blocks, masked and sorted, and marks them
// taken; blocks without a gateway or overlapping one already taken are
// skipped (and listed in State.Skipped).
func (p *planner) claim(peer Node) []netip.Prefix {
	blocks := slices.Clone(peer.Blocks)
	slices.SortFunc(blocks, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	var out []netip.Prefix
	for _, blk := range blocks {
		blk = blk.Masked()
		if _, err := overlay.Gateway(blk); err != nil {
			p.skip("peer %s: %v", peer.Name, err)
			continue
		}
		if other := p.claims.ClaimBlock(blk, "peer "+peer.Name); other != "" {
			p.skip("peer %s: block %s overlaps %s", peer.Name, blk, other)
			continue
		}
		out = append(out, blk)
	}
	return out
}
