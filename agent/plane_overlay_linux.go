package agent

import (
	"context"
	"errors"
	"net/netip"

	"github.com/hashicorp/go-hclog"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/ipam"
	"github.com/flatmesh/flatmesh/overlay"
)

// overlayBase is what the overlay planes (vxlan, wireguard) share: a
// container's address carries its block's prefix length, its gateway is its
// block's gateway on our bridge, the space is ours alone (nothing to probe),
// and there is no NIC to restore.
type overlayBase struct{}

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

// watchLinks pokes (without blocking) when the links, their addresses,
// routes or (on neighLinks) neighbours change, until ctx ends; if the
// netlink watch stops, the periodic resync remains.
func watchLinks(ctx context.Context, poke func(), log hclog.Logger, links, neighLinks []string) {
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
	err := kernel.Watch(ctx, kernel.WatchOptions{Links: links, NeighLinks: neighLinks, Wake: wake, Logger: log.Named("watch")})
	if err != nil && ctx.Err() == nil {
		log.Warn("netlink watch stopped; relying on the periodic resync", "error", err)
	}
}
