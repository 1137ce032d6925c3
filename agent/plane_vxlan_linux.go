package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/flatmesh/flatmesh/agent/firewall"
	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/ipam"
	"github.com/flatmesh/flatmesh/overlay"
	"github.com/flatmesh/flatmesh/overlay/vxlan"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// firewallRecheck bounds how long a rule removed behind our back (a
// firewall reload) stays missing.
const firewallRecheck = 30 * time.Second

// vxlanPlane programs the VXLAN overlay in the agent's own namespace.
type vxlanPlane struct {
	cfg Config
	log hclog.Logger

	mu            sync.Mutex // serialises kernel changes
	mtu           int
	txOffload     bool
	underlayIndex int
	underlayName  string
	watchLinks    []string
	fwGate        settleGate
	poke          func() // set by Watch: wakes the reconcile loop
}

func newVXLANPlane(cfg Config, log hclog.Logger) *vxlanPlane {
	return &vxlanPlane{cfg: cfg, log: log, fwGate: settleGate{settle: firewallSettle, recheck: firewallRecheck}}
}

func (p *vxlanPlane) Bridge() string { return p.cfg.Bridge }
func (p *vxlanPlane) MTU() int       { return p.mtu }

// Address of an overlay container carries its block's prefix length.
func (p *vxlanPlane) Address(al ipam.Allocation) netip.Prefix { return al.Prefix }

// Gateway of an overlay container is its block's gateway on our bridge.
func (p *vxlanPlane) Gateway(al ipam.Allocation) netip.Addr {
	if al.Gateway.IsValid() {
		return al.Gateway
	}
	gw, _ := overlay.Gateway(al.Prefix.Masked())
	return gw
}

// Probe: the overlay space is ours alone; nothing to ask.
func (p *vxlanPlane) Probe(context.Context, netip.Addr) (bool, error) { return false, nil }

func (p *vxlanPlane) Restore(context.Context) error {
	return errors.New("restore is for flat mode")
}

// Setup finds the underlay link, computes the MTU and returns our VTEP MAC.
func (p *vxlanPlane) Setup(ctx context.Context) (cluster.Meta, error) {
	ns, err := kernel.OpenNS("")
	if err != nil {
		return cluster.Meta{}, err
	}
	defer ns.Close()
	under := p.cfg.Advertise.Addr()
	link, err := kernel.LinkWithAddr(ns, under)
	if err != nil {
		return cluster.Meta{}, fmt.Errorf("finding the underlay link of %s (the advertise address must be on a local interface): %w", under, err)
	}
	p.underlayIndex, p.underlayName = link.Attrs().Index, link.Attrs().Name
	p.mtu, err = overlay.ResolveMTU(overlay.MTUOptions{
		Mode: "vxlan", UnderlayMTU: link.Attrs().MTU, IPv6Underlay: under.Is6(), Override: p.cfg.MTU,
	})
	if err != nil {
		return cluster.Meta{}, err
	}
	var why string
	p.txOffload, why = txChecksumOffload(p.cfg.TxChecksumOffload, kernelRelease())
	p.log.Info("vxlan data plane", "underlay", link.Attrs().Name, "underlay_mtu", link.Attrs().MTU, "mtu", p.mtu,
		"vni", p.cfg.VNI, "port", p.cfg.VXLANPort, "tx_checksum_offload", p.txOffload, "why", why)
	return cluster.Meta{VTEPMAC: vxlan.VTEPMAC(under)}, nil
}

func (p *vxlanPlane) options() vxlan.Options {
	return vxlan.Options{
		Device: vxlan.DefaultDevice, VNI: int(p.cfg.VNI), Port: int(p.cfg.VXLANPort), Bridge: p.cfg.Bridge,
		MTU: p.mtu, UnderlayIndex: p.underlayIndex, TxChecksumOffload: p.txOffload,
	}
}

// Reconcile computes the desired state from the view and applies it.
func (p *vxlanPlane) Reconcile(ctx context.Context, v view) error {
	self := vxlan.Node{Name: v.Self.Name, Underlay: v.Self.Meta.Underlay, VTEPMAC: v.Self.Meta.VTEPMAC, Blocks: bridgeBlocks(v)}
	var peers []vxlan.Node
	var underlays []netip.Prefix
	for _, peer := range v.Alive {
		if peer.Meta.Mode != "vxlan" {
			continue
		}
		peers = append(peers, vxlan.Node{Name: peer.Name, Underlay: peer.Meta.Underlay, VTEPMAC: peer.Meta.VTEPMAC,
			Blocks: overlay.Aggregate(v.Blocks[peer.Name])})
		underlays = append(underlays, netip.PrefixFrom(peer.Meta.Underlay, peer.Meta.Underlay.BitLen()))
	}
	st, err := vxlan.Desired(self, peers, p.directOptions(p.options()))
	if err != nil {
		return err
	}
	for _, s := range st.Skipped {
		p.log.Debug("left out of the desired state", "why", s)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ns, err := kernel.OpenNS("")
	if err != nil {
		return err
	}
	defer ns.Close()
	res, err := vxlan.Apply(ns, st)
	if !res.Empty() {
		p.log.Info("data plane changed", "links", res.Links, "plan", res.Plan.String())
	}
	if err != nil {
		return err
	}
	p.watchLinks, _ = st.WatchLinks()
	return p.ensureFirewall(underlays)
}

// bridgeBlocks are the blocks whose gateway goes on our bridge: those with
// local containers, or else our first block, so that routes to peers have a
// source address of ours (replies then come back through the overlay).
func bridgeBlocks(v view) []netip.Prefix {
	if len(v.InUse) > 0 {
		return v.InUse
	}
	if own := v.Blocks[v.Self.Name]; len(own) > 0 {
		return own[:1]
	}
	return nil
}

// ensureFirewall programs forwarding and NAT when the inputs changed or the
// recheck interval passed (someone may have flushed our rules).
func (p *vxlanPlane) ensureFirewall(underlays []netip.Prefix) error {
	sort.Slice(underlays, func(i, j int) bool { return underlays[i].Addr().Less(underlays[j].Addr()) })
	o := firewall.Options{
		Bridge: p.cfg.Bridge, Overlay: vxlan.DefaultDevice, ClusterCIDRs: []netip.Prefix{p.cfg.CIDR},
		NoNAT: underlays, Masquerade: p.cfg.Masquerade, Logger: p.log.Named("firewall"),
	}
	key := fmt.Sprint(o.ClusterCIDRs, o.NoNAT, o.Masquerade)
	if !p.fwGate.due(key, time.Now(), p.poke) {
		return nil
	}
	if err := ensureRules(o, int(p.cfg.VXLANPort)); err != nil {
		return fmt.Errorf("programming forwarding rules: %w", err)
	}
	p.fwGate.written(key, time.Now())
	return nil
}

// Watch wakes the loop when our bridge, VXLAN link, their addresses,
// neighbours, FDB entries or our routes change.
func (p *vxlanPlane) Watch(ctx context.Context, poke func()) {
	p.mu.Lock()
	p.poke = poke
	p.mu.Unlock()
	wake := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
				poke()
			}
		}
	}()
	links := []string{p.cfg.Bridge, vxlan.DefaultDevice}
	err := kernel.Watch(ctx, kernel.WatchOptions{Links: links, NeighLinks: []string{vxlan.DefaultDevice}, Wake: wake, Logger: p.log.Named("watch")})
	if err != nil && ctx.Err() == nil {
		p.log.Warn("netlink watch stopped; relying on the periodic resync", "error", err)
	}
}

// Purge removes the firewall rules, every attachment, the VXLAN link and the bridge.
func (p *vxlanPlane) Purge(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	errs = append(errs, removeRules(firewall.Options{Bridge: p.cfg.Bridge, Overlay: vxlan.DefaultDevice, ClusterCIDRs: []netip.Prefix{p.cfg.CIDR}}))
	errs = append(errs, detachAll(ctx, p.cfg.Bridge))
	ns, err := kernel.OpenNS("")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer ns.Close()
	errs = append(errs, vxlan.Remove(ns, vxlan.DefaultDevice, p.cfg.Bridge), vxlan.RemoveDirect(ns, p.underlayName))
	return errors.Join(errs...)
}

// newDataPlane picks the mode's implementation.
func newDataPlane(cfg Config, log hclog.Logger) (dataPlane, error) {
	switch cfg.Mode {
	case "vxlan":
		return newVXLANPlane(cfg, log), nil
	case "flat":
		return newFlatPlane(cfg, log), nil
	default:
		log.Warn("the data plane of this mode is not built yet: membership only", "mode", cfg.Mode)
		return membershipPlane{mode: cfg.Mode}, nil
	}
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
