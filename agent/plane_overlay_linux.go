package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/flatmesh/flatmesh/agent/firewall"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/ipam"
	"github.com/flatmesh/flatmesh/overlay"
)

// overlayBase is what the overlay planes (vxlan, wireguard) share: a
// container's address carries its block's prefix length, its gateway is its
// block's gateway on our bridge, the space is ours alone (nothing to probe),
// and there is no NIC to restore.
type overlayBase struct{}

// Capabilities: containers attach to our bridge; every block has its
// gateway; the overlay space is ours alone, so nothing is probed.
func (overlayBase) Capabilities() Capabilities {
	return Capabilities{Attach: true, GatewayPerBlock: true}
}

func (overlayBase) Address(al ipam.Allocation) netip.Prefix { return al.Prefix }

func (overlayBase) Gateway(al ipam.Allocation) netip.Addr {
	if al.Gateway.IsValid() {
		return al.Gateway
	}
	gw, _ := overlay.Gateway(al.Prefix.Masked())
	return gw
}

func (overlayBase) Probe(context.Context, netip.Addr) (bool, error) { return false, nil }

func (overlayBase) Restore(context.Context) error { return errors.New("restore is for flat mode") }

// watchKernel runs kernel.Watch with o until ctx ends, calling poke on
// every event (pokes coalesce). A watch that fails is logged: the periodic
// resync still catches what it would have.
func watchKernel(ctx context.Context, log hclog.Logger, o kernel.WatchOptions, poke func()) {
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
	o.Wake, o.Logger = wake, log.Named("watch")
	if err := kernel.Watch(ctx, o); err != nil && ctx.Err() == nil {
		log.Warn("netlink watch stopped; relying on the periodic resync", "error", err)
	}
}

// underlayMTU finds the link holding the advertise address and the overlay
// MTU of mode over it (the operator's --mtu when set).
func underlayMTU(ns *kernel.NS, cfg Config, mode string) (netlink.Link, int, error) {
	under := cfg.Advertise.Addr()
	link, err := kernel.LinkWithAddr(ns, under)
	if err != nil {
		return nil, 0, fmt.Errorf("finding the underlay link of %s (the advertise address must be on a local interface): %w", under, err)
	}
	mtu, err := overlay.ResolveMTU(overlay.MTUOptions{
		Mode: mode, UnderlayMTU: link.Attrs().MTU, IPv6Underlay: under.Is6(), Override: cfg.MTU,
	})
	return link, mtu, err
}

// overlayFirewall is the firewall of an overlay plane whose tunnel device
// is device on UDP port: forwarding between it and our bridge, NAT, the
// tunnel port open to the members' underlay addresses only (local: this
// host's underlay address, for the tunnel's notrack rule) and, with direct
// routing, unencapsulated cluster traffic on the underlay link.
func overlayFirewall(cfg Config, log hclog.Logger, device string, port uint16, underlayLink string,
	local netip.Addr, underlays []netip.Prefix) firewall.Options {
	direct := ""
	if cfg.DirectRouting {
		direct = underlayLink
	}
	return firewall.Options{Direct: direct,
		Bridge: cfg.Bridge, Overlay: device, ClusterCIDRs: []netip.Prefix{cfg.CIDR},
		Masquerade: cfg.Masquerade, Logger: log.Named("firewall"),
		TunnelPorts: []uint16{port}, Members: firewall.Addrs(underlays), StateFile: firewallStateFile(cfg),
		TunnelLocal: local,
	}
}
