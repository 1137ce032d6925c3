package wireguard

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Plan is what Diff found to change on the device. Peers are matched by
// public key: a wanted key the device lacks is added, one whose endpoint,
// allowed IPs or keepalive differ is updated in place (the session
// survives), and keys not wanted are removed. Every peer of the device is
// ours (the device is), so nothing else is ever left alone.
type Plan struct {
	PrivateKey *wgtypes.Key // nil = unchanged
	ListenPort *int         // nil = unchanged
	Add        []Peer
	Update     []Peer
	Remove     []wgtypes.Key
}

// Empty reports whether the plan has nothing to do.
func (p Plan) Empty() bool {
	return p.PrivateKey == nil && p.ListenPort == nil && len(p.Add)+len(p.Update)+len(p.Remove) == 0
}

// String summarises the plan for logs (never the private key).
func (p Plan) String() string {
	var parts []string
	if p.PrivateKey != nil {
		parts = append(parts, "new private key")
	}
	if p.ListenPort != nil {
		parts = append(parts, fmt.Sprintf("listen port %d", *p.ListenPort))
	}
	for _, c := range []struct {
		verb string
		n    int
	}{{"add", len(p.Add)}, {"update", len(p.Update)}, {"remove", len(p.Remove)}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d peer", c.verb, c.n))
		}
	}
	if len(parts) == 0 {
		return "nothing to do"
	}
	return strings.Join(parts, ", ")
}

// Diff compares the desired device with the observed one. Diff(want, want)
// is empty.
func Diff(want, have Device) Plan {
	var p Plan
	if want.PrivateKey != have.PrivateKey {
		k := want.PrivateKey
		p.PrivateKey = &k
	}
	if want.ListenPort != have.ListenPort {
		port := want.ListenPort
		p.ListenPort = &port
	}
	haveBy := make(map[wgtypes.Key]Peer, len(have.Peers))
	for _, h := range have.Peers {
		haveBy[h.PublicKey] = h
	}
	wanted := make(map[wgtypes.Key]bool, len(want.Peers))
	for _, w := range want.Peers {
		wanted[w.PublicKey] = true
		h, ok := haveBy[w.PublicKey]
		switch {
		case !ok:
			p.Add = append(p.Add, w)
		case !samePeer(w, h):
			p.Update = append(p.Update, w)
		}
	}
	for _, h := range have.Peers {
		if !wanted[h.PublicKey] {
			p.Remove = append(p.Remove, h.PublicKey)
		}
	}
	slices.SortFunc(p.Remove, func(a, b wgtypes.Key) int { return slices.Compare(a[:], b[:]) })
	return p
}

func samePeer(a, b Peer) bool {
	return a.Endpoint == b.Endpoint && a.Keepalive == b.Keepalive && slices.Equal(normPrefixes(a.AllowedIPs), normPrefixes(b.AllowedIPs))
}

func normPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, netip.PrefixFrom(p.Addr().Unmap(), unmappedBits(p)).Masked())
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

func unmappedBits(p netip.Prefix) int {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return p.Bits() - 96
	}
	return p.Bits()
}

// Config is the wgctrl configuration that carries out the plan. Updated
// peers replace their allowed IPs; nothing else on the device changes.
func (p Plan) Config() wgtypes.Config {
	var c wgtypes.Config
	c.PrivateKey = p.PrivateKey
	c.ListenPort = p.ListenPort
	for _, k := range p.Remove {
		c.Peers = append(c.Peers, wgtypes.PeerConfig{PublicKey: k, Remove: true})
	}
	for _, list := range [][]Peer{p.Add, p.Update} {
		for _, w := range list {
			c.Peers = append(c.Peers, peerConfig(w))
		}
	}
	return c
}

func peerConfig(w Peer) wgtypes.PeerConfig {
	ka := w.Keepalive
	pc := wgtypes.PeerConfig{PublicKey: w.PublicKey, ReplaceAllowedIPs: true, PersistentKeepaliveInterval: &ka}
	if w.Endpoint.IsValid() {
		pc.Endpoint = net.UDPAddrFromAddrPort(w.Endpoint)
	}
	for _, a := range normPrefixes(w.AllowedIPs) {
		pc.AllowedIPs = append(pc.AllowedIPs, net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())})
	}
	return pc
}

// FromWgtypes converts a device read with wgctrl into a Device.
func FromWgtypes(d *wgtypes.Device) Device {
	out := Device{Name: d.Name, PrivateKey: d.PrivateKey, ListenPort: d.ListenPort}
	for _, wp := range d.Peers {
		p := Peer{PublicKey: wp.PublicKey, Keepalive: wp.PersistentKeepaliveInterval}
		if wp.Endpoint != nil {
			ap := wp.Endpoint.AddrPort()
			p.Endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		for _, n := range wp.AllowedIPs {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				ones, _ := n.Mask.Size()
				p.AllowedIPs = append(p.AllowedIPs, netip.PrefixFrom(a.Unmap(), ones))
			}
		}
		p.AllowedIPs = normPrefixes(p.AllowedIPs)
		out.Peers = append(out.Peers, p)
	}
	sortPeers(out.Peers)
	return out
}

// PeerStats is what `flatmesh peers` shows of a WireGuard peer.
type PeerStats struct {
	LastHandshake time.Time // zero = never
	RxBytes       int64
	TxBytes       int64
}

// Stats indexes a device's peer counters by public key.
func Stats(d *wgtypes.Device) map[wgtypes.Key]PeerStats {
	out := make(map[wgtypes.Key]PeerStats, len(d.Peers))
	for _, p := range d.Peers {
		out[p.PublicKey] = PeerStats{LastHandshake: p.LastHandshakeTime, RxBytes: p.ReceiveBytes, TxBytes: p.TransmitBytes}
	}
	return out
}
