// Package wireguard is the WireGuard data plane: one WireGuard device per
// host; for every live peer that owns blocks, a WireGuard peer (its public
// key, endpoint = underlay address and port, AllowedIPs = its blocks) and a
// route per block through the device (src our own gateway). Desired and
// Diff are pure; Apply (Linux) programs the device through wgctrl, the same
// code path for a kernel device and for the embedded userspace one (wgctrl
// reaches that through its UAPI socket), and the routes with
// internal/kernel.
package wireguard

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/overlay"
)

// Defaults (docs/architecture.md).
const (
	DefaultDevice = "flatmesh.wg"
	DefaultPort   = 51820
)

// Node is a host as the WireGuard plane sees it: the agent builds one from a
// cluster.Peer plus the blocks IPAM says it owns.
type Node struct {
	Name      string
	Underlay  netip.Addr  // where its WireGuard device listens
	Port      int         // its listen port
	PublicKey wgtypes.Key // zero = not yet known (skipped)
	Blocks    []netip.Prefix
	// Direct says the peer accepts direct routing (it gossips the flag);
	// only such peers are routed to without the tunnel.
	Direct bool
}

// Options configure the plane; zero values take the defaults.
type Options struct {
	Device     string           // WireGuard link name, default DefaultDevice
	Port       int              // our listen port, default DefaultPort
	PrivateKey wgtypes.Key      // our private key; required
	Keepalive  time.Duration    // persistent keepalive for every peer; 0 = off
	Bridge     string           // local bridge, default overlay.DefaultBridge
	BridgeMAC  net.HardwareAddr // nil = overlay.BridgeMAC(self.Underlay)
	MTU        int              // overlay MTU (overlay.ResolveMTU); required
	// Direct routing (overlay.Direct): same-subnet peers that gossip the
	// flag get plain routes via their underlay address, unencrypted, and
	// no WireGuard peer entry. The agent turns it on only with
	// --wg-direct-cleartext.
	overlay.Direct
}

// Peer is one WireGuard peer entry. AllowedIPs are masked and sorted.
type Peer struct {
	Name       string // for logs; not part of the device
	PublicKey  wgtypes.Key
	Endpoint   netip.AddrPort
	AllowedIPs []netip.Prefix
	Keepalive  time.Duration
}

// Device is the WireGuard device configuration: what wgctrl reads and writes.
type Device struct {
	Name       string
	PrivateKey wgtypes.Key
	ListenPort int
	Peers      []Peer // sorted by public key
}

// State is the desired state of one host.
type State struct {
	Bridge  overlay.Bridge
	MTU     int
	Device  Device
	Objects kernel.State // bridge addresses and routes through the device
	Skipped []string     // peers or blocks left out, and why (for the log)
	// UnderlayDevice carries the routes of direct peers (Options.Direct);
	// Direct names those peers, sorted.
	UnderlayDevice string
	Direct         []string
}

// Scope is every kernel object (besides the device's peers) the plane owns.
func (s State) Scope() kernel.Scope {
	return kernel.Scope{AddrLinks: []string{s.Bridge.Spec.Name},
		RouteLinks: overlay.Direct{UnderlayDevice: s.UnderlayDevice}.RouteLinks(s.Device.Name)}
}

func (o Options) withDefaults(self Node) Options {
	o.Device = cmp.Or(o.Device, DefaultDevice)
	o.Port = cmp.Or(o.Port, DefaultPort)
	o.Bridge = cmp.Or(o.Bridge, overlay.DefaultBridge)
	if o.BridgeMAC == nil {
		o.BridgeMAC = overlay.BridgeMAC(self.Underlay)
	}
	return o
}

// Desired computes the host's WireGuard state from itself and the live
// peers (the agent passes only alive ones: a dead peer is absent, so its
// peer entry and routes are withdrawn). It is pure and deterministic: peer
// order does not matter. Peers without blocks, key, port or a usable
// underlay address, or clashing with self or an earlier peer (by name) in
// key or underlay, are skipped and listed in State.Skipped; so are blocks
// that overlap our own or a block already taken. It fails only on a bad
// self or bad options.
func Desired(self Node, peers []Node, opts Options) (State, error) {
	if !self.Underlay.IsValid() {
		return State{}, fmt.Errorf("wireguard: self %q has no underlay address", self.Name)
	}
	self.Underlay = self.Underlay.Unmap()
	opts = opts.withDefaults(self)
	switch {
	case opts.MTU <= 0:
		return State{}, fmt.Errorf("wireguard: mtu not set (compute it with overlay.ResolveMTU)")
	case opts.PrivateKey == (wgtypes.Key{}):
		return State{}, fmt.Errorf("wireguard: no private key")
	case opts.Port < 1 || opts.Port > 65535:
		return State{}, fmt.Errorf("wireguard: listen port %d out of range 1-65535", opts.Port)
	case opts.Keepalive < 0:
		return State{}, fmt.Errorf("wireguard: negative keepalive %s", opts.Keepalive)
	}
	if err := kernel.ValidateIfName(opts.Device); err != nil {
		return State{}, fmt.Errorf("wireguard: %w", err)
	}
	if err := opts.Direct.Check(); err != nil {
		return State{}, fmt.Errorf("wireguard: %w", err)
	}
	br, err := overlay.DesiredBridge(overlay.BridgeOptions{Name: opts.Bridge, MTU: opts.MTU, MAC: opts.BridgeMAC, Blocks: self.Blocks})
	if err != nil {
		return State{}, fmt.Errorf("wireguard: %w", err)
	}
	st := State{
		Bridge:         br,
		MTU:            opts.MTU,
		Device:         Device{Name: opts.Device, PrivateKey: opts.PrivateKey, ListenPort: opts.Port},
		UnderlayDevice: opts.UnderlayDevice,
	}
	st.Objects.Addrs = append(st.Objects.Addrs, br.Addrs...)
	selfPub := opts.PrivateKey.PublicKey()
	p := planner{st: &st, self: self, opts: opts,
		keys: map[wgtypes.Key]string{selfPub: self.Name}, claims: overlay.NewClaims(self.Name, self.Underlay, br.Blocks())}
	sorted := slices.Clone(peers)
	slices.SortFunc(sorted, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	for _, peer := range sorted {
		p.addPeer(peer)
	}
	sortPeers(st.Device.Peers)
	return st, nil
}

// planner accumulates per-peer entries while remembering what is taken.
type planner struct {
	st     *State
	self   Node
	opts   Options
	claims *overlay.Claims
	keys   map[wgtypes.Key]string
}

func (p *planner) skip(format string, args ...any) {
	p.st.Skipped = append(p.st.Skipped, fmt.Sprintf(format, args...))
}

func (p *planner) addPeer(peer Node) {
	if peer.Name == p.self.Name {
		return
	}
	under := peer.Underlay.Unmap()
	switch {
	case len(peer.Blocks) == 0:
		return // nothing to route to; not worth a log line
	case peer.PublicKey == (wgtypes.Key{}):
		p.skip("peer %s: no wireguard public key", peer.Name)
		return
	case peer.Port < 1 || peer.Port > 65535:
		p.skip("peer %s: wireguard port %d out of range", peer.Name, peer.Port)
		return
	case p.claims.UnderlayProblem(under) != "":
		p.skip("peer %s: %s", peer.Name, p.claims.UnderlayProblem(under))
		return
	case p.keys[peer.PublicKey] != "":
		p.skip("peer %s: public key %s already used by %s", peer.Name, peer.PublicKey, p.keys[peer.PublicKey])
		return
	}
	allowed := p.claim(peer)
	if len(allowed) == 0 {
		return
	}
	p.keys[peer.PublicKey] = peer.Name
	p.claims.ClaimUnderlay(under, peer.Name)
	if peer.Direct && p.opts.Reaches(under) {
		p.st.Objects.Routes = append(p.st.Objects.Routes, p.opts.Direct.Routes(p.st.Bridge, under, allowed)...)
		p.st.Direct = append(p.st.Direct, peer.Name) // peers come sorted
		return
	}
	for _, blk := range allowed {
		p.st.Objects.Routes = append(p.st.Objects.Routes, kernel.Route{Dst: blk, Dev: p.st.Device.Name,
			Src: p.st.Bridge.FirstGateway(blk.Addr().Is4())})
	}
	p.st.Device.Peers = append(p.st.Device.Peers, Peer{Name: peer.Name, PublicKey: peer.PublicKey,
		Endpoint: netip.AddrPortFrom(under, uint16(peer.Port)), AllowedIPs: allowed, Keepalive: p.opts.Keepalive})
}

// claim returns the peer's blocks, masked and sorted, that overlap nothing
// claimed before (the others are skipped with the reason).
func (p *planner) claim(peer Node) []netip.Prefix {
	blocks := slices.Clone(peer.Blocks)
	slices.SortFunc(blocks, comparePrefix)
	var allowed []netip.Prefix
	for _, blk := range blocks {
		if !blk.IsValid() {
			p.skip("peer %s: invalid block %s", peer.Name, blk)
			continue
		}
		blk = blk.Masked()
		if other := p.claims.ClaimBlock(blk, "peer "+peer.Name); other != "" {
			p.skip("peer %s: block %s overlaps %s", peer.Name, blk, other)
			continue
		}
		allowed = append(allowed, blk)
	}
	return allowed
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

func sortPeers(ps []Peer) {
	slices.SortFunc(ps, func(a, b Peer) int { return slices.Compare(a.PublicKey[:], b.PublicKey[:]) })
}
