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

// Capabilities say what a data plane can do, so that the agent's handlers
// ask the plane instead of comparing mode names.
type Capabilities struct {
	// Attach: containers can be plugged into this plane now (a bridge
	// exists). False for a plane that only takes part in membership, and
	// for flat mode after its restore.
	Attach bool
	// ProbesLAN: an address is probed on the LAN (Probe) before it is
	// handed out, because devices that are not ours share the segment.
	ProbesLAN bool
	// GratuitousARP: a container announces its address once attached.
	GratuitousARP bool
	// GatewayPerBlock: the allocator keeps one gateway address per block
	// (overlays); false when the LAN's own gateway serves every container.
	GatewayPerBlock bool
	// Restore: the plane can put the host's NIC back as it was (flat).
	Restore bool
}

// driftReporter is what a plane that watches state it does not own
// implements: the differences it found and left alone (flat mode: the
// host's addresses and default route on the bridge). Safe to call
// concurrently with everything.
type driftReporter interface {
	Drift() []string
}

// dataPlane is one mode's kernel programming. The methods that write the
// kernel (Setup, Reconcile, Purge, Restore) are called with the agent's
// kernel lock held (see kernelLock), so they never race each other or an
// attach; they must not wait for the network or for peers while they hold
// it. Probe waits (it listens on the LAN) and is called without the lock.
// The accessors (Capabilities, Bridge, MTU, Address, Gateway) are safe to
// call concurrently with everything. All kernel-writing methods are
// idempotent: running one twice in a row changes nothing the second time.
type dataPlane interface {
	// Capabilities say what the plane can do now.
	Capabilities() Capabilities
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
