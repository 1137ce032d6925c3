// Package docker serves Docker's remote network driver and IPAM driver
// protocols (one plugin, one socket, name "flatmesh") on top of the agent.
//
// Docker's model and flatmesh's meet like this: Docker's IPAM asks for a
// pool (answered with the cluster's space: the LAN subnet in flat mode, the
// overlay CIDR otherwise), a gateway (a nominal one: flat mode's LAN
// router, the overlay's first address) and one address per endpoint, which
// the agent allocates from its own blocks (ARP-probed in flat mode) under a
// pending id. CreateEndpoint binds that allocation to the endpoint (its id
// becomes "docker:<endpoint id>", persisted by the agent's IPAM), Join
// makes a veth pair whose host end is on the mode's bridge and returns the
// other end for Docker to move into the container, Leave removes the pair,
// ReleaseAddress frees the address cluster-wide.
//
// The protocol is go-plugins-helpers' (its types, codec and handler); this
// package holds the rules and the messages, the Backend (implemented by the
// agent) holds the allocator and the kernel.
package docker

import (
	"context"
	"net"
	"net/netip"
	"strings"
)

// IDPrefix starts the allocation id of every address Docker holds.
const IDPrefix = "docker:"

// pendingPrefix marks an address handed to Docker that no endpoint has
// claimed yet.
const pendingPrefix = IDPrefix + "pending-"

// IsDockerID reports whether an allocation id belongs to Docker (the agent's
// garbage collection of vanished attachments leaves them alone: Docker
// releases its own addresses).
func IsDockerID(id string) bool { return strings.HasPrefix(id, IDPrefix) }

// EndpointID is the allocation id of a Docker endpoint.
func EndpointID(endpoint string) string { return IDPrefix + endpoint }

// Space is what this cluster hands out to Docker.
type Space struct {
	Mode    string       // flat, vxlan, wireguard
	Subnet  netip.Prefix // the pool Docker sees (the container's prefix length)
	Range   netip.Prefix // the addresses flatmesh allocates from, inside Subnet
	Gateway netip.Addr   // the nominal gateway Docker records for the network
	MTU     int          // of every container interface
}

// Lease is an address held for Docker.
type Lease struct {
	ID      string
	Addr    netip.Addr
	Gateway netip.Addr // the container's default gateway
	Name    string
}

// Plugged is a veth pair ready for Docker to move into the container.
type Plugged struct {
	HostIf, PeerIf string
	MAC            net.HardwareAddr
}

// Backend is what the plugin needs from the agent. Every method is safe for
// concurrent use; the plugin serialises calls about one endpoint itself.
// Allocate, Release, Rebind, Plug and Unplug are idempotent for the same
// arguments.
type Backend interface {
	// Space is the cluster's space; it does not change while the agent runs.
	Space() Space
	// Allocate reserves want (or any free address when want is zero) under
	// id, probing the LAN in flat mode. The error names the holder of a
	// taken address or says the space is exhausted.
	Allocate(ctx context.Context, id string, want netip.Addr) (Lease, error)
	// Holder returns the lease holding addr, if any (Docker's or not).
	Holder(addr netip.Addr) (Lease, bool)
	// Lookup returns the lease of id.
	Lookup(id string) (Lease, bool)
	// Rebind moves the lease of addr from its current id to id.
	Rebind(addr netip.Addr, id string) error
	// SetName records the container name of id's lease (for listings, DNS).
	SetName(id, name string) error
	// Release frees id's address cluster-wide; releasing nothing is no error.
	Release(id string) error
	// Plug makes id's veth pair with the data plane's MTU on its bridge.
	Plug(ctx context.Context, id string) (Plugged, error)
	// Unplug removes id's veth pair; a missing one is no error.
	Unplug(ctx context.Context, id string) error
	// Leases lists every lease held for Docker.
	Leases() []Lease
	// Plugged reports whether id's veth pair exists.
	Plugged(id string) bool
}
