// Package overlay holds what the overlay data planes (vxlan, wireguard)
// share: the MTU arithmetic, the gateway convention for address blocks,
// deterministic MACs, and the local bridge that the host's containers sit
// on. Desired state is pure (DesiredBridge); each mode applies it with its
// own state in one pass (vxlan.Apply) through internal/kernel.
package overlay

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// Data-plane modes.
const (
	ModeFlat      = "flat"
	ModeVXLAN     = "vxlan"
	ModeWireGuard = "wireguard"
)

// DefaultBridge is the local bridge of the overlay modes.
const DefaultBridge = "flatmesh0"

// Overhead is the number of bytes a mode adds to every packet, given the
// family of the underlay (the outer header):
//   - vxlan: outer IP (20 or 40) + UDP 8 + VXLAN 8 + inner Ethernet 14 = 50 / 70
//   - wireguard: outer IP (20 or 40) + UDP 8 + WireGuard 32 = 60 / 80
//   - flat: nothing is encapsulated, 0
func Overhead(mode string, ipv6Underlay bool) (int, error) {
	ip := 20
	if ipv6Underlay {
		ip = 40
	}
	switch mode {
	case ModeFlat:
		return 0, nil
	case ModeVXLAN:
		return ip + 8 + 8 + 14, nil
	case ModeWireGuard:
		return ip + 8 + 32, nil
	}
	return 0, fmt.Errorf("unknown mode %q (want %s, %s or %s)", mode, ModeFlat, ModeVXLAN, ModeWireGuard)
}

// MTU is the largest packet a container can send in mode over an underlay
// link of underlayMTU: underlayMTU - Overhead. It returns 0 for an unknown
// mode or when nothing would be left; ResolveMTU explains such cases.
func MTU(underlayMTU int, mode string, ipv6Underlay bool) int {
	oh, err := Overhead(mode, ipv6Underlay)
	if err != nil || underlayMTU-oh < minMTU(false) {
		return 0
	}
	return underlayMTU - oh
}

// MTUOptions are the inputs of ResolveMTU.
type MTUOptions struct {
	Mode         string
	UnderlayMTU  int  // MTU of the underlay link (kernel.LinkWithAddr finds it)
	IPv6Underlay bool // the outer header is IPv6
	IPv6Overlay  bool // containers carry IPv6 (needs at least 1280)
	Override     int  // operator's --mtu; 0 = compute
}

func minMTU(ipv6Overlay bool) int {
	if ipv6Overlay {
		return 1280
	}
	return 576
}

// ResolveMTU returns the MTU for the bridge, the tunnel link and every
// container interface: the operator's override when set, else the
// underlay's MTU less the mode's overhead. It refuses values below 576
// (1280 with an IPv6 overlay) or above 65535.
func ResolveMTU(o MTUOptions) (int, error) {
	lo := minMTU(o.IPv6Overlay)
	if o.Override != 0 {
		if o.Override < lo || o.Override > 65535 {
			return 0, fmt.Errorf("mtu override %d out of range %d-65535", o.Override, lo)
		}
		return o.Override, nil
	}
	oh, err := Overhead(o.Mode, o.IPv6Underlay)
	if err != nil {
		return 0, err
	}
	if o.UnderlayMTU <= 0 {
		return 0, fmt.Errorf("underlay mtu unknown; set --mtu")
	}
	if m := o.UnderlayMTU - oh; m < lo {
		return 0, fmt.Errorf("underlay mtu %d leaves %d after %s's %d bytes of overhead, below the minimum %d; set --mtu or raise the underlay mtu",
			o.UnderlayMTU, m, o.Mode, oh, lo)
	}
	return o.UnderlayMTU - oh, nil
}

// Gateway is the address a host takes on its bridge for a block it owns,
// and the default route of the block's containers: the first address after
// the block's network address (10.213.0.64/26 -> 10.213.0.65). Blocks too
// small to hold a gateway and a container (/31, /32, /127, /128) fail.
func Gateway(block netip.Prefix) (netip.Addr, error) {
	if !block.IsValid() {
		return netip.Addr{}, fmt.Errorf("invalid block %s", block)
	}
	block = block.Masked()
	if block.Addr().BitLen()-block.Bits() < 2 {
		return netip.Addr{}, fmt.Errorf("block %s is too small for a gateway and a container", block)
	}
	return block.Addr().Next(), nil
}

// MAC kinds for DeriveMAC.
const (
	MACKindBridge = 0xfc
	MACKindVTEP   = 0xfd
)

// DeriveMAC returns a deterministic, locally administered unicast MAC for a
// host's link of the given kind: 0e:KIND followed by the four bytes of an
// IPv4 underlay address (readable: 0e:fd:c6:12:00:01 is 198.18.0.1), or the
// first four bytes of the SHA-256 of an IPv6 one. The same address always
// gives the same MAC, so a restarted agent keeps its VTEP identity.
func DeriveMAC(kind byte, underlay netip.Addr) net.HardwareAddr {
	a := underlay.Unmap()
	var tail []byte
	if a.Is4() {
		b := a.As4()
		tail = b[:]
	} else {
		b := a.As16()
		sum := sha256.Sum256(b[:])
		tail = sum[:4]
	}
	return net.HardwareAddr(append([]byte{0x0e, kind}, tail...))
}

// BridgeMAC is the MAC pinned on the host's bridge, so it does not change
// as container ports come and go (containers cache their gateway's MAC).
func BridgeMAC(underlay netip.Addr) net.HardwareAddr { return DeriveMAC(MACKindBridge, underlay) }

// BridgeOptions are the inputs of DesiredBridge.
type BridgeOptions struct {
	Name   string           // default DefaultBridge
	MTU    int              // overlay MTU (ResolveMTU)
	MAC    net.HardwareAddr // pinned MAC; nil leaves it to the kernel
	Blocks []netip.Prefix   // blocks this host owns
}

// Bridge is the desired local bridge: the link and the gateway address of
// every owned block (with the block's prefix length).
type Bridge struct {
	Spec     kernel.BridgeSpec
	Addrs    []kernel.Addr
	Gateways []netip.Addr // in block order
}

// DesiredBridge computes the bridge for the host's blocks. Overlapping or
// invalid blocks are an error: they come from IPAM and mean a bug there.
func DesiredBridge(o BridgeOptions) (Bridge, error) {
	if o.Name == "" {
		o.Name = DefaultBridge
	}
	b := Bridge{Spec: kernel.BridgeSpec{Name: o.Name, MTU: o.MTU, MAC: o.MAC}}
	if err := b.Spec.Validate(); err != nil {
		return Bridge{}, err
	}
	blocks := make([]netip.Prefix, 0, len(o.Blocks))
	for _, blk := range o.Blocks {
		blocks = append(blocks, blk.Masked())
	}
	slices.SortFunc(blocks, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	for i, blk := range blocks {
		if i > 0 && blocks[i-1].Overlaps(blk) {
			return Bridge{}, fmt.Errorf("owned blocks %s and %s overlap", blocks[i-1], blk)
		}
		gw, err := Gateway(blk)
		if err != nil {
			return Bridge{}, err
		}
		b.Gateways = append(b.Gateways, gw)
		b.Addrs = append(b.Addrs, kernel.Addr{Dev: o.Name, Prefix: netip.PrefixFrom(gw, blk.Bits())})
	}
	return b, nil
}

// FirstGateway is the first gateway of the given family (IPv4 when v4),
// the source address for host traffic into the overlay; zero when the host
// owns no block of that family.
func (b Bridge) FirstGateway(v4 bool) netip.Addr {
	for _, g := range b.Gateways {
		if g.Is4() == v4 {
			return g
		}
	}
	return netip.Addr{}
}

// Scope is what the bridge owns: every address on it.
// Blocks are the blocks of the bridge's gateway addresses (ours).
func (b Bridge) Blocks() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range b.Addrs {
		out = append(out, a.Prefix.Masked())
	}
	return out
}

func (b Bridge) Scope() kernel.Scope { return kernel.Scope{AddrLinks: []string{b.Spec.Name}} }
