package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/ipam"
)

// membershipPlane is the data plane of a mode with no plane registered on
// this build (the planes are Linux-only): the agent gossips, allocates nothing and attaches nothing,
// and says so instead of pretending.
type membershipPlane struct{ mode string }

var _ dataPlane = membershipPlane{}

func (p membershipPlane) err() error {
	return fmt.Errorf("the %s data plane is not built yet: this agent takes part in membership only (use --mode vxlan or flat to attach containers)", p.mode)
}

// Capabilities: none; the agent gossips and allocates nothing.
func (membershipPlane) Capabilities() Capabilities { return Capabilities{} }

func (membershipPlane) Setup(context.Context) (cluster.Meta, error) { return cluster.Meta{}, nil }
func (membershipPlane) Reconcile(context.Context, view) error       { return nil }
func (membershipPlane) Watch(ctx context.Context, _ func())         { <-ctx.Done() }
func (membershipPlane) Bridge() string                              { return "" }
func (membershipPlane) MTU() int                                    { return 0 }
func (membershipPlane) Gateway(ipam.Allocation) netip.Addr          { return netip.Addr{} }
func (p membershipPlane) Probe(context.Context, netip.Addr) (bool, error) {
	return false, p.err()
}
func (membershipPlane) Purge(context.Context) error { return nil }
func (membershipPlane) Restore(context.Context) error {
	return errors.New("restore is for flat mode")
}

func (membershipPlane) Address(al ipam.Allocation) netip.Prefix { return al.Prefix }
