package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/flatmesh/flatmesh/agent/firewall"
	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/flat"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/ipam"
	"github.com/hashicorp/go-hclog"
)

// probeTimeout is how long a flat-mode attach listens for a LAN device
// answering for the address it is about to hand out.
const probeTimeout = 700 * time.Millisecond

// flatPlane is the LAN bridge mode: the switch-over is a transaction in
// package flat; afterwards every host is one segment, so there are no
// routes to keep, only the forwarding rules for bridged traffic.
type flatPlane struct {
	cfg Config
	log hclog.Logger

	mu       sync.Mutex
	mtu      int
	gateway  netip.Addr
	lan      netip.Prefix // the LAN subnet the flat range sits in
	restored bool         // flat restore ran: the bridge is gone, attach is refused
	fwAt     time.Time
}

func newFlatPlane(cfg Config, log hclog.Logger) *flatPlane { return &flatPlane{cfg: cfg, log: log} }

func (p *flatPlane) options() flat.Options {
	return flat.Options{
		Iface: p.cfg.Iface, Bridge: p.cfg.Bridge, Range: p.cfg.FlatRange, Exclude: p.cfg.FlatExclude,
		ProbeAddr: p.cfg.ProbeAddr, StateDir: p.cfg.StateDir, Logger: p.log,
	}
}

// Setup runs (or adopts) the switch-over and learns the LAN's gateway.
func (p *flatPlane) Setup(ctx context.Context) (cluster.Meta, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
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
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.restored {
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
	inUse, mac, err := flat.Probe(ctx, flat.ProbeOptions{Iface: p.cfg.Bridge, Addr: addr, Timeout: probeTimeout})
	if inUse {
		p.log.Warn("address in use on the LAN", "addr", addr, "mac", mac)
	}
	return inUse, err
}

// Reconcile keeps the forwarding rules for bridged container traffic (Docker
// sets FORWARD to DROP and br_netfilter sends bridged frames through it).
func (p *flatPlane) Reconcile(ctx context.Context, v view) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.restored || time.Since(p.fwAt) < firewallRecheck {
		return nil
	}
	if err := ensureRules(p.firewallOptions(), 0); err != nil {
		return fmt.Errorf("programming forwarding rules: %w", err)
	}
	p.fwAt = time.Now()
	return nil
}

func (p *flatPlane) firewallOptions() firewall.Options {
	return firewall.Options{Bridge: p.cfg.Bridge, ClusterCIDRs: []netip.Prefix{p.cfg.FlatRange}, Logger: p.log.Named("firewall")}
}

func (p *flatPlane) Watch(ctx context.Context, poke func()) { <-ctx.Done() }

// Purge detaches every container and removes the rules; the bridge stays
// (the host's address lives on it) unless Restore runs too.
func (p *flatPlane) Purge(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(detachAll(ctx, p.cfg.Bridge), removeRules(p.firewallOptions()))
}

// Restore puts the NIC back exactly as recorded before the switch-over.
func (p *flatPlane) Restore(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := detachAll(ctx, p.cfg.Bridge); err != nil {
		return fmt.Errorf("detaching containers before the restore: %w", err)
	}
	if err := flat.Restore(ctx, p.options()); err != nil {
		return err
	}
	p.restored = true
	return nil
}
