package docker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/docker/go-plugins-helpers/network"
)

// CreateNetwork accepts only networks whose pool came from this IPAM.
func (p *Plugin) CreateNetwork(r *network.CreateNetworkRequest) (*empty, error) {
	if err := validID("network", r.NetworkID); err != nil {
		return nil, err
	}
	if len(r.IPv6Data) > 0 {
		return nil, fmt.Errorf("flatmesh: IPv6 is not supported yet; create the network without --ipv6")
	}
	if len(r.IPv4Data) != 1 || r.IPv4Data[0] == nil || r.IPv4Data[0].AddressSpace != AddressSpace ||
		(r.IPv4Data[0].Pool != p.space.Subnet.String() && r.IPv4Data[0].Pool != AnyPool) {
		return nil, fmt.Errorf("flatmesh: a flatmesh network takes its addresses from flatmesh: " +
			"docker network create -d flatmesh --ipam-driver flatmesh NAME (with one IPv4 pool)")
	}
	p.log.Info("docker network created", "network", r.NetworkID, "pool", r.IPv4Data[0].Pool, "gateway", r.IPv4Data[0].Gateway)
	return nil, nil
}

// CreateEndpoint binds the address Docker got from our IPAM to the endpoint.
func (p *Plugin) CreateEndpoint(r *network.CreateEndpointRequest) (*network.CreateEndpointResponse, error) {
	if err := validID("network", r.NetworkID); err != nil {
		return nil, err
	}
	if err := validID("endpoint", r.EndpointID); err != nil {
		return nil, err
	}
	if r.Interface == nil || r.Interface.Address == "" {
		return nil, fmt.Errorf("flatmesh: the endpoint has no IPv4 address: create the network with --ipam-driver flatmesh")
	}
	if r.Interface.AddressIPv6 != "" {
		return nil, fmt.Errorf("flatmesh: IPv6 is not supported yet; create the network without --ipv6")
	}
	a, err := parseAddr(r.Interface.Address)
	if err != nil || !p.space.Range.Contains(a) {
		return nil, fmt.Errorf("flatmesh: address %s is not from flatmesh's range %s: create the network with --ipam-driver flatmesh", r.Interface.Address, p.space.Range)
	}
	id := EndpointID(r.EndpointID)
	p.epMu.Lock()
	defer p.epMu.Unlock()
	lease, ok := p.o.Backend.Holder(a)
	switch {
	case ok && lease.ID == id:
	case ok && strings.HasPrefix(lease.ID, pendingPrefix):
		if err := p.o.Backend.Rebind(a, id); err != nil {
			return nil, fmt.Errorf("flatmesh: binding %s to the endpoint: %w", a, err)
		}
	case ok:
		return nil, fmt.Errorf("flatmesh: address %s is held by %s; pick another --ip", a, holderText(lease))
	default:
		return nil, fmt.Errorf("flatmesh: address %s was not handed out by flatmesh on this host: create the network with --ipam-driver flatmesh", a)
	}
	p.log.Info("docker endpoint created", "endpoint", r.EndpointID, "addr", a)
	return &network.CreateEndpointResponse{}, nil
}

func holderText(l Lease) string {
	if l.Name != "" {
		return fmt.Sprintf("container %s (%s)", l.Name, l.ID)
	}
	return l.ID
}

// DeleteEndpoint removes the endpoint's pair if Leave did not; Docker
// releases the address itself with ReleaseAddress.
func (p *Plugin) DeleteEndpoint(r *network.DeleteEndpointRequest) (*empty, error) {
	if err := validID("endpoint", r.EndpointID); err != nil {
		return nil, err
	}
	return nil, p.unplug(r.EndpointID)
}

// unplug removes an endpoint's pair (Leave, DeleteEndpoint).
func (p *Plugin) unplug(endpointID string) error {
	ctx, cancel := context.WithTimeout(p.ctx, callTimeout)
	defer cancel()
	p.epMu.Lock()
	defer p.epMu.Unlock()
	if err := p.o.Backend.Unplug(ctx, EndpointID(endpointID)); err != nil {
		return fmt.Errorf("flatmesh: removing the container's interface: %w", err)
	}
	return nil
}

// EndpointInfo reports what the driver made.
func (p *Plugin) EndpointInfo(r *network.InfoRequest) (*network.InfoResponse, error) {
	if err := validID("endpoint", r.EndpointID); err != nil {
		return nil, err
	}
	lease, ok := p.o.Backend.Lookup(EndpointID(r.EndpointID))
	if !ok {
		return &network.InfoResponse{Value: map[string]string{}}, nil
	}
	return &network.InfoResponse{Value: map[string]string{"address": lease.Addr.String(), "gateway": gwText(lease.Gateway)}}, nil
}

// Join makes the veth pair and tells Docker which end to move in.
func (p *Plugin) Join(r *network.JoinRequest) (*network.JoinResponse, error) {
	if err := validID("network", r.NetworkID); err != nil {
		return nil, err
	}
	if err := validID("endpoint", r.EndpointID); err != nil {
		return nil, err
	}
	id := EndpointID(r.EndpointID)
	ctx, cancel := context.WithTimeout(p.ctx, callTimeout)
	defer cancel()
	p.epMu.Lock()
	lease, ok := p.o.Backend.Lookup(id)
	if !ok {
		p.epMu.Unlock()
		return nil, fmt.Errorf("flatmesh: endpoint %.12s holds no address on this host (was the agent's state dir wiped?): "+
			"disconnect and connect the container again", r.EndpointID)
	}
	pl, err := p.o.Backend.Plug(ctx, id)
	p.epMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("flatmesh: making the container's interface: %w", err)
	}
	res := &network.JoinResponse{
		InterfaceName:         network.InterfaceName{SrcName: pl.PeerIf, DstPrefix: "eth"},
		DisableGatewayService: true,
	}
	if lease.Gateway.IsValid() {
		res.Gateway = lease.Gateway.String()
	}
	p.log.Info("docker endpoint joined", "endpoint", r.EndpointID, "addr", lease.Addr, "host_if", pl.HostIf)
	p.nameLater(r.NetworkID, r.EndpointID)
	return res, nil
}

// Leave removes the pair (Docker has taken the address off already).
func (p *Plugin) Leave(r *network.LeaveRequest) (*empty, error) {
	if err := validID("endpoint", r.EndpointID); err != nil {
		return nil, err
	}
	return nil, p.unplug(r.EndpointID)
}

// nameLater asks the NameSource for the container's name once Docker has
// finished the join (it lists the endpoint only then), in the background.
func (p *Plugin) nameLater(networkID, endpointID string) {
	if p.o.Names == nil {
		return
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
		defer cancel()
		for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
			name, err := p.o.Names.EndpointName(ctx, networkID, endpointID)
			if err == nil && name != "" {
				if err := p.o.Backend.SetName(EndpointID(endpointID), name); err != nil {
					p.log.Debug("naming a docker lease", "endpoint", endpointID, "error", err)
				}
				return
			}
			select {
			case <-ctx.Done():
				p.log.Debug("no container name for a docker endpoint", "endpoint", endpointID, "error", err)
				return
			case <-time.After(delay):
			}
		}
	}()
}
