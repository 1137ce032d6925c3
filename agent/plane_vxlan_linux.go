package agent

import (
	"context"
	"errors"
	"net/netip"

	"github.com/flatmesh/flatmesh/agent/firewall"
	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/overlay"
	"github.com/flatmesh/flatmesh/overlay/vxlan"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// vxlanPlane programs the VXLAN overlay in the agent's own namespace. Its
// fields are written by Setup and Reconcile only, which the agent calls
// with its kernel lock held (after Setup, mtu is read-only).
type vxlanPlane struct {
	overlayBase
	cfg Config
	log hclog.Logger

	mtu           int
	txOffload     bool
	underlayIndex int
	underlayName  string
	firewall      firewallGate
}

func init() {
	registerPlane(overlay.ModeVXLAN, func(cfg Config, log hclog.Logger) dataPlane { return newVXLANPlane(cfg, log) })
}

var _ dataPlane = (*vxlanPlane)(nil)

func newVXLANPlane(cfg Config, log hclog.Logger) *vxlanPlane {
	return &vxlanPlane{cfg: cfg, log: log}
}

func (p *vxlanPlane) Bridge() string { return p.cfg.Bridge }
func (p *vxlanPlane) MTU() int       { return p.mtu }

// Setup finds the underlay link, computes the MTU and returns our VTEP MAC.
func (p *vxlanPlane) Setup(ctx context.Context) (cluster.Meta, error) {
	ns, err := kernel.OpenNS("")
	if err != nil {
		return cluster.Meta{}, err
	}
	defer ns.Close()
	link, mtu, err := underlayMTU(ns, p.cfg, overlay.ModeVXLAN)
	if err != nil {
		return cluster.Meta{}, err
	}
	p.underlayIndex, p.underlayName, p.mtu = link.Attrs().Index, link.Attrs().Name, mtu
	var why string
	p.txOffload, why = txChecksumOffload(p.cfg.TxChecksumOffload, kernelRelease())
	p.log.Info("vxlan data plane", "underlay", link.Attrs().Name, "underlay_mtu", link.Attrs().MTU, "mtu", p.mtu,
		"vni", p.cfg.VNI, "port", p.cfg.VXLANPort, "tx_checksum_offload", p.txOffload, "why", why)
	return cluster.Meta{VTEPMAC: vxlan.VTEPMAC(p.cfg.Advertise.Addr()), DirectRouting: p.cfg.DirectRouting}, nil
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
		if peer.Meta.Mode != overlay.ModeVXLAN {
			continue
		}
		peers = append(peers, vxlan.Node{Name: peer.Name, Underlay: peer.Meta.Underlay, VTEPMAC: peer.Meta.VTEPMAC,
			Blocks: overlay.Aggregate(v.Blocks[peer.Name]), Direct: peer.Meta.DirectRouting})
		underlays = append(underlays, netip.PrefixFrom(peer.Meta.Underlay, peer.Meta.Underlay.BitLen()))
	}
	opts := p.options()
	opts.Direct = directOptions(p.log, p.cfg.DirectRouting, p.underlayName)
	st, err := vxlan.Desired(self, peers, opts)
	if err != nil {
		return err
	}
	for _, s := range st.Skipped {
		p.log.Debug("left out of the desired state", "why", s)
	}
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
	return p.ensureFirewall(self.Underlay, underlays)
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
func (p *vxlanPlane) ensureFirewall(local netip.Addr, underlays []netip.Prefix) error {
	o := overlayFirewall(p.cfg, p.log, vxlan.DefaultDevice, p.cfg.VXLANPort, p.underlayName, local, underlays)
	return p.firewall.ensure(o, int(p.cfg.VXLANPort))
}

// Watch wakes the loop when our bridge, VXLAN link, their addresses,
// neighbours, FDB entries or our routes change.
func (p *vxlanPlane) Watch(ctx context.Context, poke func()) {
	p.firewall.watch(ctx, p.log, poke)
	watchKernel(ctx, p.log, kernel.WatchOptions{Links: []string{p.cfg.Bridge, vxlan.DefaultDevice},
		NeighLinks: []string{vxlan.DefaultDevice}}, poke)
}

// Purge removes the firewall rules, every attachment, the VXLAN link and the bridge.
func (p *vxlanPlane) Purge(ctx context.Context) error {
	var errs []error
	errs = append(errs, removeRules(firewall.Options{Bridge: p.cfg.Bridge, Overlay: vxlan.DefaultDevice, ClusterCIDRs: []netip.Prefix{p.cfg.CIDR},
		StateFile: firewallStateFile(p.cfg)}))
	errs = append(errs, detachAll(ctx, p.cfg.Bridge))
	ns, err := kernel.OpenNS("")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer ns.Close()
	errs = append(errs, vxlan.Remove(ns, vxlan.DefaultDevice, p.cfg.Bridge), overlay.RemoveDirect(ns, p.underlayName))
	return errors.Join(errs...)
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
