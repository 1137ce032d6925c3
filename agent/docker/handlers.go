package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"

	"github.com/docker/go-plugins-helpers/ipam"
	"github.com/docker/go-plugins-helpers/network"
	"github.com/docker/go-plugins-helpers/sdk"
)

// routes registers every call of both protocols on h.
func (p *Plugin) routes(h sdk.Handler) {
	handle(h, "/IpamDriver.GetCapabilities", p, func(*empty) (*ipam.CapabilitiesResponse, error) {
		return &ipam.CapabilitiesResponse{}, nil
	})
	handle(h, "/IpamDriver.GetDefaultAddressSpaces", p, func(*empty) (*ipam.AddressSpacesResponse, error) {
		return &ipam.AddressSpacesResponse{LocalDefaultAddressSpace: AddressSpace, GlobalDefaultAddressSpace: AddressSpace}, nil
	})
	handle(h, "/IpamDriver.RequestPool", p, p.RequestPool)
	handle(h, "/IpamDriver.ReleasePool", p, func(*ipam.ReleasePoolRequest) (*empty, error) { return nil, nil })
	handle(h, "/IpamDriver.RequestAddress", p, p.RequestAddress)
	handle(h, "/IpamDriver.ReleaseAddress", p, p.ReleaseAddress)

	handle(h, "/NetworkDriver.GetCapabilities", p, func(*empty) (*network.CapabilitiesResponse, error) {
		return &network.CapabilitiesResponse{Scope: network.LocalScope, ConnectivityScope: network.GlobalScope}, nil
	})
	handle(h, "/NetworkDriver.CreateNetwork", p, p.CreateNetwork)
	handle(h, "/NetworkDriver.DeleteNetwork", p, func(r *network.DeleteNetworkRequest) (*empty, error) { return nil, nil })
	handle(h, "/NetworkDriver.AllocateNetwork", p, func(*network.AllocateNetworkRequest) (*network.AllocateNetworkResponse, error) {
		return nil, fmt.Errorf("flatmesh: swarm-scoped networks are not supported; create a local network with -d flatmesh on each host")
	})
	handle(h, "/NetworkDriver.FreeNetwork", p, func(*network.FreeNetworkRequest) (*empty, error) { return nil, nil })
	handle(h, "/NetworkDriver.CreateEndpoint", p, p.CreateEndpoint)
	handle(h, "/NetworkDriver.DeleteEndpoint", p, p.DeleteEndpoint)
	handle(h, "/NetworkDriver.EndpointOperInfo", p, p.EndpointInfo)
	handle(h, "/NetworkDriver.Join", p, p.Join)
	handle(h, "/NetworkDriver.Leave", p, p.Leave)
	for _, path := range []string{"/NetworkDriver.DiscoverNew", "/NetworkDriver.DiscoverDelete"} {
		handle(h, path, p, func(*network.DiscoveryNotification) (*empty, error) { return nil, nil })
	}
	handle(h, "/NetworkDriver.ProgramExternalConnectivity", p, func(*network.ProgramExternalConnectivityRequest) (*empty, error) {
		return nil, nil
	})
	handle(h, "/NetworkDriver.RevokeExternalConnectivity", p, func(*network.RevokeExternalConnectivityRequest) (*empty, error) {
		return nil, nil
	})
}

// RequestPool answers with the cluster's space, or says what fits.
func (p *Plugin) RequestPool(r *ipam.RequestPoolRequest) (*ipam.RequestPoolResponse, error) {
	if r.AddressSpace != "" && r.AddressSpace != AddressSpace {
		return nil, fmt.Errorf("flatmesh: unknown address space %q; leave it out", r.AddressSpace)
	}
	pl, err := p.space.requestPool(r.Pool, r.SubPool, r.V6)
	if err != nil {
		return nil, err
	}
	// A network made without --subnet gets the pool 0.0.0.0/0: for a pool
	// it did not name, Docker 20.10 tests the answer against the host's
	// routes and asks again forever on an overlap (libnetwork's
	// requestPoolHelper), and a flatmesh host always routes the cluster's
	// space. 0.0.0.0/0 is the one answer that test skips (as for the null
	// IPAM); the pool id still carries the space, and every address keeps
	// the space's prefix. See docs/docker.md.
	shown := pl.Subnet.String()
	if r.Pool == "" || r.Pool == AnyPool {
		shown = AnyPool
	}
	return &ipam.RequestPoolResponse{PoolID: pl.id(), Pool: shown}, nil
}

// RequestAddress hands Docker the network's gateway or an address for an
// endpoint, held under a pending id until CreateEndpoint claims it.
func (p *Plugin) RequestAddress(r *ipam.RequestAddressRequest) (*ipam.RequestAddressResponse, error) {
	pl, err := p.space.parsePool(r.PoolID)
	if err != nil {
		return nil, err
	}
	if r.Options["RequestAddressType"] == gatewayType {
		gw, err := p.space.gateway(r.Address)
		if err != nil {
			return nil, err
		}
		return &ipam.RequestAddressResponse{Address: gw.String()}, nil
	}
	var want netip.Addr
	if r.Address != "" {
		if want, err = p.space.wanted(r.Address); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(p.ctx, callTimeout)
	defer cancel()
	// Not under epMu: the allocator is safe for concurrent use, and an
	// allocation may probe the LAN for 700 ms, which must not hold up
	// other endpoints (docker compose starts many at once).
	id := pendingPrefix + randomHex()
	lease, ok := p.spareFor(ctx, id, want)
	if !ok {
		lease, err = p.o.Backend.Allocate(ctx, id, want)
		if err != nil && p.heldBySpare(want) {
			// A refill took the --ip address meanwhile: a fresh spare now.
			lease, ok = p.spareFor(ctx, id, want)
		}
		if err != nil && !ok {
			return nil, err
		}
	}
	p.log.Debug("address handed to docker", "addr", lease.Addr, "id", lease.ID)
	return &ipam.RequestAddressResponse{Address: netip.PrefixFrom(lease.Addr, pl.Subnet.Bits()).String()}, nil
}

// ReleaseAddress frees an address Docker holds; the gateway and addresses
// held by anyone but Docker are left alone.
func (p *Plugin) ReleaseAddress(r *ipam.ReleaseAddressRequest) (*empty, error) {
	if _, err := p.space.parsePool(r.PoolID); err != nil {
		return nil, err
	}
	a, err := parseAddr(r.Address)
	if err != nil {
		return nil, fmt.Errorf("flatmesh: cannot release %q: not an IPv4 address", r.Address)
	}
	p.epMu.Lock()
	defer p.epMu.Unlock()
	lease, ok := p.o.Backend.Holder(a)
	if !ok || !IsDockerID(lease.ID) {
		return nil, nil
	}
	if err := p.o.Backend.Release(lease.ID); err != nil {
		return nil, fmt.Errorf("flatmesh: releasing %s: %w; the agent keeps it until `flatmesh` can reach its state dir again", a, err)
	}
	p.log.Info("address released by docker", "addr", a, "id", lease.ID)
	return nil, nil
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
