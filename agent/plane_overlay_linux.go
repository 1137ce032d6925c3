package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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

// firewallGate programs an overlay's rules (forwarding, NAT, tunnel ports,
// notrack) through a settleGate: at once when they were never written, when
// the recheck interval passed (someone may have flushed them), and when a
// member is new (until it is in the tunnel-port allowlist its packets are
// dropped); other changes (a member gone, the NAT exemptions) at most once
// per settle period, so a storm of departures and flaps costs few rewrites.
// Safe for concurrent use.
type firewallGate struct {
	gate settleGate             // zero value: the firewall's settle and recheck periods
	wake atomic.Pointer[func()] // wakes the reconcile loop for a delayed write

	mu      sync.Mutex
	members map[netip.Addr]bool // in the last written rules
}

// setWake gives the gate the plane's poke (the plane's Watch has it).
func (g *firewallGate) setWake(wake func()) { g.wake.Store(&wake) }

func (g *firewallGate) ensure(o firewall.Options, tunnelPort int) error {
	slices.SortFunc(o.NoNAT, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	key := fmt.Sprint(o.ClusterCIDRs, o.NoNAT, o.Masquerade, o.TunnelPorts, o.Members, o.Direct)
	var wake func()
	if w := g.wake.Load(); w != nil {
		wake = *w
	}
	if !g.newMember(o.Members) && !g.gate.due(key, time.Now(), wake) {
		return nil
	}
	if err := ensureRules(o, tunnelPort); err != nil {
		return fmt.Errorf("programming forwarding rules: %w", err)
	}
	g.gate.written(key, time.Now())
	g.mu.Lock()
	g.members = map[netip.Addr]bool{}
	for _, m := range o.Members {
		g.members[m] = true
	}
	g.mu.Unlock()
	return nil
}

// newMember reports whether members holds one the last written rules lack.
func (g *firewallGate) newMember(members []netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.members == nil {
		return false // nothing written yet: the settle gate writes at once
	}
	for _, m := range members {
		if !g.members[m] {
			return true
		}
	}
	return false
}
