package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flatmesh/flatmesh/agent/firewall"
	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/overlay"
	"github.com/flatmesh/flatmesh/overlay/wireguard"
)

// wireguardPlane programs the WireGuard overlay in the agent's own
// namespace: a kernel WireGuard device when the kernel has the module,
// else wireguard-go embedded in the agent on a persistent TUN (the link and
// its routes outlive the agent; the tunnels stop with it until the next
// agent re-attaches, which it does first thing at start).
type wireguardPlane struct {
	overlayBase
	cfg Config
	log hclog.Logger

	mu       sync.Mutex // serialises kernel and device changes, guards the fields below
	mtu      int
	underlay string // the underlay link's name (direct routes go out there)
	key      wgtypes.Key
	handle   wireguard.Handle
	wg       *wgctrl.Client
	firewall firewallGate
}

func init() {
	registerPlane(overlay.ModeWireGuard, func(cfg Config, log hclog.Logger) dataPlane { return newWireGuardPlane(cfg, log) })
}

var _ dataPlane = (*wireguardPlane)(nil)

func newWireGuardPlane(cfg Config, log hclog.Logger) *wireguardPlane {
	return &wireguardPlane{cfg: cfg, log: log}
}

func (p *wireguardPlane) Bridge() string { return p.cfg.Bridge }
func (p *wireguardPlane) MTU() int       { return p.mtu }

func (p *wireguardPlane) keyPath() string { return filepath.Join(p.cfg.StateDir, wireguard.KeyFile) }
func (p *wireguardPlane) peersPath() string {
	return filepath.Join(p.cfg.StateDir, "wireguard-peers.json")
}

// Setup computes the MTU, loads (or makes) our key, opens the device
// (kernel or userspace) and gives it our key, port and the peers of the
// last run at once, so a restarted userspace device carries traffic again
// before gossip has converged. It returns our public key and port.
func (p *wireguardPlane) Setup(ctx context.Context) (cluster.Meta, error) {
	ns, err := kernel.OpenNS("")
	if err != nil {
		return cluster.Meta{}, err
	}
	defer ns.Close()
	link, mtu, err := underlayMTU(ns, p.cfg, overlay.ModeWireGuard)
	if err != nil {
		return cluster.Meta{}, err
	}
	p.mtu, p.underlay = mtu, link.Attrs().Name
	key, created, err := wireguard.LoadOrCreateKey(p.keyPath())
	if err != nil {
		return cluster.Meta{}, err
	}
	if created {
		p.log.Info("generated this host's wireguard key pair", "public_key", key.PublicKey().String(), "file", p.keyPath())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.key = key
	start := time.Now()
	p.handle, err = wireguard.OpenDevice(wireguard.SystemLinks{NS: ns, Logger: p.log.Named("wireguard-go")}, wireguard.DefaultDevice, p.mtu)
	if err != nil {
		return cluster.Meta{}, err
	}
	if p.wg, err = wgctrl.New(); err != nil {
		return cluster.Meta{}, fmt.Errorf("opening wgctrl: %w", err)
	}
	if err := p.quickStart(ns); err != nil {
		return cluster.Meta{}, err
	}
	p.log.Info("wireguard data plane", "device", wireguard.DefaultDevice, "backend", p.handle.Backend,
		"created", p.handle.Created, "underlay", link.Attrs().Name, "underlay_mtu", link.Attrs().MTU, "mtu", p.mtu,
		"port", p.cfg.WGPort, "public_key", key.PublicKey().String(), "ready_in", time.Since(start).String())
	if p.cfg.DirectRouting {
		p.log.Warn("direct routing is on: container traffic to peers on this host's underlay subnets is not encrypted (--wg-direct-cleartext)")
	}
	return cluster.Meta{WGPublicKey: key.PublicKey(), WGPort: p.cfg.WGPort, DirectRouting: p.cfg.DirectRouting}, nil
}

// quickStart brings the link up and programs key, port and, when the device
// has no peers yet (a userspace device after a restart), those of the last
// run. Peers the first pass no longer wants are removed by it.
func (p *wireguardPlane) quickStart(ns *kernel.NS) error {
	if _, err := kernel.EnsureLinkUp(ns, wireguard.DefaultDevice, p.mtu); err != nil {
		return fmt.Errorf("wireguard: %w", err)
	}
	d, err := p.wg.Device(wireguard.DefaultDevice)
	if err != nil {
		return fmt.Errorf("wireguard: reading device: %w", err)
	}
	want := wireguard.FromWgtypes(d)
	want.PrivateKey, want.ListenPort = p.key, int(p.cfg.WGPort)
	if len(want.Peers) == 0 {
		cached, err := wireguard.LoadPeers(p.peersPath())
		if err != nil {
			p.log.Warn("ignoring the saved wireguard peers", "error", err)
		}
		want.Peers = cached
	}
	plan, err := wireguard.ConfigureDevice(p.wg, want)
	if err != nil {
		return err
	}
	if !plan.Empty() {
		p.log.Info("wireguard device programmed at start", "plan", plan.String())
	}
	return nil
}

// Reconcile computes the desired state from the view and applies it.
func (p *wireguardPlane) Reconcile(ctx context.Context, v view) error {
	self := wireguard.Node{Name: v.Self.Name, Underlay: v.Self.Meta.Underlay, Blocks: bridgeBlocks(v)}
	var peers []wireguard.Node
	var underlays []netip.Prefix
	for _, peer := range v.Alive {
		if peer.Meta.Mode != overlay.ModeWireGuard {
			continue
		}
		peers = append(peers, wireguard.Node{Name: peer.Name, Underlay: peer.Meta.Underlay, Port: int(peer.Meta.WGPort),
			PublicKey: peer.Meta.WGPublicKey, Blocks: overlay.Aggregate(v.Blocks[peer.Name]), Direct: peer.Meta.DirectRouting})
		if peer.Meta.Underlay.IsValid() {
			underlays = append(underlays, netip.PrefixFrom(peer.Meta.Underlay, peer.Meta.Underlay.BitLen()))
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wg == nil {
		return errors.New("wireguard: the device is not open")
	}
	opts := p.options()
	opts.Direct = directOptions(p.log, p.cfg.DirectRouting, p.underlay)
	st, err := wireguard.Desired(self, peers, opts)
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
	res, err := wireguard.Apply(ns, p.wg, st)
	if !res.Empty() {
		p.log.Info("data plane changed", "links", res.Links, "device", res.Device.String(), "plan", res.Plan.String())
	}
	if err != nil {
		return err
	}
	if !res.Device.Empty() {
		if err := wireguard.SavePeers(p.peersPath(), st.Device.Peers); err != nil {
			p.log.Warn("saving the wireguard peers for a fast restart", "error", err)
		}
	}
	return p.ensureFirewall(p.cfg.Advertise.Addr(), underlays)
}

func (p *wireguardPlane) options() wireguard.Options {
	return wireguard.Options{
		Device: wireguard.DefaultDevice, Port: int(p.cfg.WGPort), PrivateKey: p.key, Bridge: p.cfg.Bridge, MTU: p.mtu,
		Keepalive: time.Duration(p.cfg.WGKeepalive) * time.Second,
	}
}

// ensureFirewall programs forwarding, NAT and the WireGuard port's scope
// (members' underlay addresses only).
func (p *wireguardPlane) ensureFirewall(local netip.Addr, underlays []netip.Prefix) error {
	o := overlayFirewall(p.cfg, p.log, wireguard.DefaultDevice, p.cfg.WGPort, p.underlay, local, underlays)
	return p.firewall.ensure(o, int(p.cfg.WGPort))
}

// Watch wakes the loop when our bridge, the WireGuard link, their
// addresses or our routes change. Peer entries changed behind our back
// (`wg set`) are put back by the periodic resync.
func (p *wireguardPlane) Watch(ctx context.Context, poke func()) {
	p.firewall.watch(ctx, p.log, poke)
	watchKernel(ctx, p.log, kernel.WatchOptions{Links: []string{p.cfg.Bridge, wireguard.DefaultDevice}}, poke)
}

// Rotate makes a new key pair, saves it and gives it to the device; the
// caller gossips the new public key. Sessions with peers restart once they
// learn it (they handshake again; TCP retransmits cover the gap).
func (p *wireguardPlane) Rotate() (wgtypes.Key, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wg == nil {
		return wgtypes.Key{}, errors.New("wireguard: the device is not open")
	}
	key, err := wireguard.NewKey(p.keyPath())
	if err != nil {
		return wgtypes.Key{}, err
	}
	if err := p.wg.ConfigureDevice(wireguard.DefaultDevice, wgtypes.Config{PrivateKey: &key}); err != nil {
		return wgtypes.Key{}, fmt.Errorf("wireguard: setting the new key: %w", err)
	}
	p.key = key
	p.log.Info("rotated this host's wireguard key pair", "public_key", key.PublicKey().String())
	// The device dropped its sessions with the old key. Start handshakes
	// now: they succeed with peers that already know the new key, and each
	// peer starts one itself when its agent learns the key (ConfigureDevice
	// does for every added peer), so neither side waits for a retry.
	if d, err := p.wg.Device(wireguard.DefaultDevice); err != nil {
		p.log.Warn("reading the device after the rotation", "error", err)
	} else if err := wireguard.Handshake(p.wg, wireguard.DefaultDevice, wireguard.FromWgtypes(d).Peers); err != nil {
		p.log.Warn("starting handshakes after the rotation", "error", err)
	}
	return key.PublicKey(), nil
}

// Backend says which device carries the overlay: kernel or userspace.
func (p *wireguardPlane) Backend() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.handle.Backend
}

// PeerStats reads the device's per-peer counters, by public key.
func (p *wireguardPlane) PeerStats() (map[wgtypes.Key]wireguard.PeerStats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wg == nil {
		return nil, errors.New("wireguard: the device is not open")
	}
	d, err := p.wg.Device(wireguard.DefaultDevice)
	if err != nil {
		return nil, fmt.Errorf("wireguard: reading device: %w", err)
	}
	return wireguard.Stats(d), nil
}

// Purge removes the firewall rules, every attachment, the WireGuard device
// and the bridge; the key stays (it is the host's identity).
func (p *wireguardPlane) Purge(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	errs = append(errs, removeRules(firewall.Options{Bridge: p.cfg.Bridge, Overlay: wireguard.DefaultDevice, ClusterCIDRs: []netip.Prefix{p.cfg.CIDR},
		StateFile: firewallStateFile(p.cfg)}))
	errs = append(errs, detachAll(ctx, p.cfg.Bridge))
	if p.wg != nil {
		errs = append(errs, p.wg.Close())
		p.wg = nil
	}
	errs = append(errs, p.handle.Close())
	if err := os.Remove(p.peersPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	ns, err := kernel.OpenNS("")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer ns.Close()
	errs = append(errs, wireguard.Remove(ns, wireguard.DefaultDevice, p.cfg.Bridge), overlay.RemoveDirect(ns, p.underlay))
	return errors.Join(errs...)
}
