package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/agent/firewall"
	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/flat"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/ipam"
	"github.com/flatmesh/flatmesh/overlay"
	"github.com/hashicorp/go-hclog"
)

// probeTimeout is how long a flat-mode attach listens for a LAN device
// answering for the address it is about to hand out.
const probeTimeout = 700 * time.Millisecond

// flatPlane is the LAN bridge mode: the switch-over is a transaction in
// package flat; afterwards every host is one segment, so there are no
// routes to keep. Each pass keeps the forwarding rules for bridged traffic,
// repairs drift on our objects (bridge settings, the NIC and container
// veths as its ports) and reports drift on the host's (its addresses and
// default route on the bridge), in the log and in status.
type flatPlane struct {
	cfg Config
	log hclog.Logger

	// Written by Setup (before the API serves), read-only afterwards.
	mtu     int
	gateway netip.Addr
	lan     netip.Prefix // the LAN subnet the flat range sits in

	firewall firewallGate

	mu       sync.Mutex // guards restored and drift, which the handlers read
	restored bool       // flat restore ran: the bridge is gone, attach is refused
	drift    []string   // the host's drift found by the last pass
}

var _ driftReporter = (*flatPlane)(nil)

func init() {
	registerPlane(overlay.ModeFlat, func(cfg Config, log hclog.Logger) dataPlane { return newFlatPlane(cfg, log) })
}

var _ dataPlane = (*flatPlane)(nil)

func newFlatPlane(cfg Config, log hclog.Logger) *flatPlane { return &flatPlane{cfg: cfg, log: log} }

// Capabilities: containers are devices on the LAN, so their addresses are
// probed first and announced after; the LAN's gateway serves every block;
// the NIC can be put back. After a restore the bridge is gone: no attach.
func (p *flatPlane) Capabilities() Capabilities {
	return Capabilities{Attach: !p.isRestored(), ProbesLAN: true, GratuitousARP: true, Restore: true}
}

func (p *flatPlane) options() flat.Options {
	return flat.Options{
		Iface: p.cfg.Iface, Bridge: p.cfg.Bridge, Range: p.cfg.FlatRange, Exclude: p.cfg.FlatExclude,
		ProbeAddr: p.cfg.ProbeAddr, StateDir: p.cfg.StateDir, Logger: p.log,
	}
}

// Setup runs (or adopts) the switch-over and learns the LAN's gateway.
func (p *flatPlane) Setup(ctx context.Context) (cluster.Meta, error) {
	res, err := flat.SwitchOver(ctx, p.options())
	if err != nil {
		return cluster.Meta{}, err
	}
	if res.Adopted {
		p.log.Info("adopted the bridge in place; nothing changed", "bridge", res.Bridge)
	} else {
		p.log.Info("switch-over done", "bridge", res.Bridge, "steps", res.Steps, "took", res.Took, "checked", res.Checked)
	}
	gw, ok := flat.Gateway(res.Original)
	if !ok {
		p.log.Warn("the NIC had no IPv4 default gateway: containers get no default route")
	}
	p.gateway = gw
	for _, a := range res.Original.Addrs {
		if a.Prefix.Masked().Contains(p.cfg.FlatRange.Addr()) {
			p.lan = a.Prefix.Masked()
		}
	}
	if !p.lan.IsValid() {
		return cluster.Meta{}, fmt.Errorf("no address of %s holds the flat range %s", p.cfg.Iface, p.cfg.FlatRange)
	}
	ns, err := kernel.OpenNS("")
	if err != nil {
		return cluster.Meta{}, err
	}
	defer ns.Close()
	br, err := ns.H.LinkByName(p.cfg.Bridge)
	if err != nil {
		return cluster.Meta{}, fmt.Errorf("reading bridge %s: %w", p.cfg.Bridge, err)
	}
	p.mtu = br.Attrs().MTU
	if p.cfg.MTU != 0 {
		p.mtu = p.cfg.MTU
	}
	return cluster.Meta{}, nil
}

func (p *flatPlane) Bridge() string {
	if p.isRestored() {
		return ""
	}
	return p.cfg.Bridge
}

func (p *flatPlane) MTU() int { return p.mtu }

// Address of a flat container carries the LAN's prefix length: it is one
// more device on the segment.
func (p *flatPlane) Address(al ipam.Allocation) netip.Prefix {
	return netip.PrefixFrom(al.Prefix.Addr(), p.lan.Bits())
}

// Gateway of a flat container is the LAN's own default gateway.
func (p *flatPlane) Gateway(ipam.Allocation) netip.Addr { return p.gateway }

// Probe asks the LAN whether a device that is not ours uses addr.
func (p *flatPlane) Probe(ctx context.Context, addr netip.Addr) (bool, error) {
	inUse, mac, err := kernel.ARPProbe(ctx, kernel.ARPProbeOptions{Iface: p.cfg.Bridge, Addr: addr, Timeout: probeTimeout})
	if inUse {
		p.log.Warn("address in use on the LAN", "addr", addr, "mac", mac)
	}
	return inUse, err
}

// Reconcile checks the bridge for drift, then keeps the forwarding rules
// for bridged container traffic (Docker sets FORWARD to DROP and
// br_netfilter sends bridged frames through it).
func (p *flatPlane) Reconcile(ctx context.Context, v view) error {
	if p.isRestored() {
		return nil
	}
	if err := p.checkDrift(ctx); err != nil {
		return err
	}
	return p.firewall.ensure(p.firewallOptions(), 0)
}

func (p *flatPlane) firewallOptions() firewall.Options {
	return firewall.Options{Bridge: p.cfg.Bridge, Flat: true, ClusterCIDRs: []netip.Prefix{p.cfg.FlatRange},
		StateFile: firewallStateFile(p.cfg), Logger: p.log.Named("firewall")}
}

// checkDrift repairs our objects and records the host's drift, logging
// each repair and each change of the host's drift.
func (p *flatPlane) checkDrift(ctx context.Context) error {
	found, err := attach.List(ctx, "", "")
	if err != nil {
		return err
	}
	ports := make([]string, 0, len(found))
	for _, f := range found {
		ports = append(ports, f.HostIf)
	}
	d, err := flat.CheckDrift(ctx, p.options(), ports)
	for _, r := range d.Repaired {
		p.log.Warn("repaired drift on the flat bridge", "what", r)
	}
	p.mu.Lock()
	changed := !slices.Equal(p.drift, d.Host)
	p.drift = d.Host
	p.mu.Unlock()
	if changed {
		if len(d.Host) == 0 {
			p.log.Info("the host's configuration on the bridge matches the switch-over again")
		}
		for _, h := range d.Host {
			p.log.Warn("the host's configuration drifted (reported, not changed)", "what", h)
		}
	}
	if err != nil {
		return fmt.Errorf("checking the flat bridge for drift: %w", err)
	}
	return nil
}

// Drift is the host's drift found by the last pass.
func (p *flatPlane) Drift() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.drift)
}

// Watch wakes the loop when the bridge or the NIC change.
func (p *flatPlane) Watch(ctx context.Context, poke func()) {
	p.firewall.watch(ctx, p.log, poke)
	watchKernel(ctx, p.log, kernel.WatchOptions{Links: []string{p.cfg.Bridge, p.cfg.Iface}}, poke)
}

// Purge detaches every container and removes the rules; the bridge stays
// (the host's address lives on it) unless Restore runs too.
func (p *flatPlane) Purge(ctx context.Context) error {
	return errors.Join(detachAll(ctx, p.cfg.Bridge), removeRules(p.firewallOptions()))
}

// Restore puts the NIC back exactly as recorded before the switch-over.
func (p *flatPlane) Restore(ctx context.Context) error {
	if err := detachAll(ctx, p.cfg.Bridge); err != nil {
		return fmt.Errorf("detaching containers before the restore: %w", err)
	}
	if err := flat.Restore(ctx, p.options()); err != nil {
		return err
	}
	p.mu.Lock()
	p.restored = true
	p.mu.Unlock()
	return nil
}

func (p *flatPlane) isRestored() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restored
}
