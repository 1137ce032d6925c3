package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/agent/docker"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/ipam"
	"github.com/vishvananda/netlink"
)

// dockerIfName is the interface part of every Docker lease's identity (the
// name inside the container is Docker's choice: eth0, eth1, ...).
const dockerIfName = attach.DefaultIfName

// dockerAllocTimeout bounds an allocation for Docker (it may wait for a
// block from a peer); Docker's own call waits longer.
const dockerAllocTimeout = 20 * time.Second

// dockerBackend implements docker.Backend on the agent: leases are IPAM
// allocations whose id starts with docker.IDPrefix, interfaces are
// attachments made by attach.PreparePeer. Both live in the agent's state
// (IPAM file, kernel), so a restarted agent adopts Docker's endpoints.
type dockerBackend struct {
	a     *Agent
	space docker.Space
}

var _ docker.Backend = (*dockerBackend)(nil)

// startDocker serves the Docker plugin when --docker-plugin-dir is set and
// the mode has a bridge. It returns the function that stops it; a failure
// is logged and leaves the agent running without the plugin.
func (a *Agent) startDocker() (stop func()) {
	stop = func() {}
	if a.cfg.DockerPluginDir == "" {
		return stop
	}
	if a.plane.Bridge() == "" {
		a.log.Warn("the docker plugin is not served: the data plane of this mode is not built yet", "mode", a.cfg.Mode)
		return stop
	}
	b := &dockerBackend{a: a, space: a.dockerSpace()}
	o := docker.Options{Dir: a.cfg.DockerPluginDir, Backend: b, Logger: a.log.Named("docker"), Observe: a.metrics.dockerObserver(),
		Spare: a.plane.Capabilities().ProbesLAN}
	if a.cfg.DockerSocket != "" {
		d := docker.NewDockerd(a.cfg.DockerSocket)
		o.Names, o.Endpoints = d, d
	}
	p, err := docker.New(o)
	if err == nil {
		err = p.Start()
	}
	if err != nil {
		a.log.Error("docker plugin not served", "error", err)
		return stop
	}
	return func() {
		if err := p.Close(); err != nil {
			a.log.Warn("stopping the docker plugin", "error", err)
		}
	}
}

// dockerSpace is the pool Docker sees. Flat: the LAN subnet, the flat range,
// the LAN router. Overlays: the whole space with its first address as the
// nominal network gateway (each container's real gateway, its block's
// gateway on our bridge, comes with Join).
func (a *Agent) dockerSpace() docker.Space {
	s := docker.Space{Mode: a.cfg.Mode, Range: a.cfg.IPAMPrefix(), MTU: a.plane.MTU()}
	if !a.plane.Capabilities().GatewayPerBlock { // flat: the LAN's subnet and router
		probe := ipam.Allocation{Prefix: netip.PrefixFrom(s.Range.Addr(), s.Range.Bits())}
		s.Subnet = a.plane.Address(probe).Masked()
		s.Gateway = a.plane.Gateway(probe)
		return s
	}
	s.Subnet, s.Gateway = s.Range, s.Range.Addr().Next()
	return s
}

// ensureProxyARP: Docker gives an overlay container the whole space as its
// prefix (10.213.0.5/16), so it ARPs for containers on other hosts. The
// bridge answers for what it routes elsewhere (proxy_arp on the bridge, no
// random delay); local containers still answer for themselves because
// their routes point back at the bridge. Flat mode needs none: the
// containers are on the real segment. See docs/docker.md. Called before
// every plug: the bridge is made by the first reconcile pass and may be
// recreated.
func (b *dockerBackend) ensureProxyARP() error {
	if !b.a.plane.Capabilities().GatewayPerBlock { // flat: containers are on the LAN itself
		return nil
	}
	ns, err := kernel.OpenNS("")
	if err != nil {
		return err
	}
	defer ns.Close()
	br := b.a.plane.Bridge()
	for key, want := range map[string]string{
		"net/ipv4/conf/" + br + "/proxy_arp":    "1",
		"net/ipv4/neigh/" + br + "/proxy_delay": "0",
	} {
		if cur, err := ns.Sysctl(key); err == nil && cur == want {
			continue
		}
		if err := ns.SetSysctl(key, want); err != nil {
			return err
		}
	}
	return nil
}

func (b *dockerBackend) Space() docker.Space { return b.space }

func (b *dockerBackend) lease(al ipam.Allocation) docker.Lease {
	return docker.Lease{ID: al.ID, Addr: al.Prefix.Addr(), Gateway: b.a.plane.Gateway(al), Name: al.Name}
}

// Allocate takes the attach path's allocation (ARP probe in flat mode).
func (b *dockerBackend) Allocate(ctx context.Context, id string, want netip.Addr) (docker.Lease, error) {
	if want.IsValid() {
		if h, ok := b.Holder(want); ok && h.ID != id {
			return docker.Lease{}, fmt.Errorf("flatmesh: address %s is held by %s on this host; pick another --ip", want, holderName(h))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, dockerAllocTimeout)
	defer cancel()
	// No kernel lock: allocating may wait for a peer or probe the LAN.
	al, err := b.a.allocateProbed(ctx, ipam.Request{ID: id, IfName: dockerIfName, Want: want})
	switch {
	case err == nil:
		return b.lease(al), nil
	case errors.Is(err, ipam.ErrNoSpace):
		return docker.Lease{}, fmt.Errorf("flatmesh: no free address left in %s (%v): remove containers you no longer need, or give the cluster a larger space", b.space.Range, err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return docker.Lease{}, fmt.Errorf("flatmesh: no address within %s: %v; check `flatmesh status` and `flatmesh peers` and try again", dockerAllocTimeout, err)
	case want.IsValid():
		return docker.Lease{}, fmt.Errorf("flatmesh: cannot give %s: %v; pick another --ip", want, err)
	default:
		return docker.Lease{}, fmt.Errorf("flatmesh: cannot allocate an address: %w", err)
	}
}

// holderName says who holds an address, for error messages.
func holderName(l docker.Lease) string {
	switch {
	case docker.IsDockerID(l.ID) && l.Name != "":
		return "Docker container " + l.Name
	case docker.IsDockerID(l.ID):
		return "a Docker container (" + l.ID + ")"
	case l.Name != "":
		return "container " + l.Name + " (" + l.ID + ")"
	}
	return l.ID
}

func (b *dockerBackend) Holder(addr netip.Addr) (docker.Lease, bool) {
	for _, al := range b.a.ipam.Allocations() {
		if al.Prefix.Addr() == addr {
			return b.lease(al), true
		}
	}
	return docker.Lease{}, false
}

func (b *dockerBackend) Lookup(id string) (docker.Lease, bool) {
	al, ok := b.a.ipam.Lookup(id, dockerIfName)
	if !ok {
		return docker.Lease{}, false
	}
	return b.lease(al), true
}

func (b *dockerBackend) Rebind(addr netip.Addr, id string) error {
	h, ok := b.Holder(addr)
	if !ok {
		return fmt.Errorf("address %s is not allocated", addr)
	}
	if h.ID == id {
		return nil
	}
	return b.a.ipam.Rename(h.ID, dockerIfName, id, dockerIfName, h.Name)
}

func (b *dockerBackend) SetName(id, name string) error {
	return b.a.ipam.Rename(id, dockerIfName, id, dockerIfName, name)
}

func (b *dockerBackend) Release(id string) error {
	if err := b.a.ipam.Release(id, dockerIfName); err != nil {
		return err
	}
	b.a.afterIPAMChange()
	return nil
}

func (b *dockerBackend) Plug(ctx context.Context, id string) (docker.Plugged, error) {
	b.a.awaitFirstPass(ctx)
	unlock := b.a.lockKernel()
	defer unlock()
	if err := b.ensureProxyARP(); err != nil {
		return docker.Plugged{}, err
	}
	res, err := attach.PreparePeer(ctx, attach.PeerSpec{ContainerID: id, IfName: dockerIfName, Bridge: b.a.plane.Bridge(), MTU: b.a.plane.MTU()})
	if err != nil {
		return docker.Plugged{}, err
	}
	b.a.poke() // the block's gateway goes on the bridge in the next pass if it is not there yet
	if l, ok := b.Lookup(id); ok {
		forgetNeighbour(b.a.plane.Bridge(), l.Addr)
		b.a.announceDocker(res.HostIf, l.Addr)
	}
	return docker.Plugged{HostIf: res.HostIf, PeerIf: res.PeerIf, MAC: res.MAC}, nil
}

func (b *dockerBackend) Leases() []docker.Lease {
	var out []docker.Lease
	for _, al := range b.a.ipam.Allocations() {
		if docker.IsDockerID(al.ID) {
			out = append(out, b.lease(al))
		}
	}
	return out
}

func (b *dockerBackend) Plugged(id string) bool {
	l, err := netlink.LinkByName(attach.HostIfName(id, dockerIfName))
	return err == nil && l.Attrs().Alias == attach.Alias(id, dockerIfName)
}

func (b *dockerBackend) Unplug(ctx context.Context, id string) error {
	if err := b.a.awaitDeleted(ctx, id); err != nil {
		return err
	}
	defer b.a.lockKernel()()
	if err := attach.Detach(ctx, attach.DetachSpec{ContainerID: id, IfName: dockerIfName}); err != nil {
		return err
	}
	if l, ok := b.Lookup(id); ok {
		forgetNeighbour(b.a.plane.Bridge(), l.Addr)
	}
	return nil
}
