package agent

import (
	"context"
	"net/netip"

	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/ipam"
)

// view is what one reconcile pass sees: a snapshot of the cluster and of
// block ownership. It is plain data, built fresh for every pass.
type view struct {
	Self   cluster.Peer
	Alive  []cluster.Peer            // alive members, self excluded
	Blocks map[string][]netip.Prefix // owner -> blocks
	// InUse are this host's blocks that hold at least one local allocation:
	// only they need a gateway address on the bridge.
	InUse []netip.Prefix
}

// dataPlane is one mode's kernel programming. Setup, Reconcile, Purge and
// Restore are called from one goroutine at a time (Run, then the reconcile
// loop, then Run's teardown; the API's flat restore takes the same lock
// inside the implementation). All of them are idempotent: running one twice
// in a row changes nothing the second time.
type dataPlane interface {
	// Setup creates or adopts the host-level devices and returns the node
	// metadata this mode contributes (VTEP MAC, keys).
	Setup(ctx context.Context) (cluster.Meta, error)
	// Reconcile makes the kernel match the view, touching only our objects.
	Reconcile(ctx context.Context, v view) error
	// Watch pokes (without blocking) when someone changes our kernel objects,
	// until ctx ends.
	Watch(ctx context.Context, poke func())
	// Bridge is the bridge container veths are plugged into.
	Bridge() string
	// MTU is the MTU of every container interface.
	MTU() int
	// Address is the container's address with the prefix length it sees
	// (its block in overlays, the LAN's subnet in flat mode).
	Address(al ipam.Allocation) netip.Prefix
	// Gateway is the default gateway a container with this allocation uses.
	Gateway(al ipam.Allocation) netip.Addr
	// Probe reports whether addr is already used by a device that is not
	// ours (flat mode's ARP probe; overlays own their space and say false).
	Probe(ctx context.Context, addr netip.Addr) (bool, error)
	// Purge removes every kernel object the mode made.
	Purge(ctx context.Context) error
	// Restore puts the host's NIC back as it was (flat mode only).
	Restore(ctx context.Context) error
}
