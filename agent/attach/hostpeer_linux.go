package attach

import (
	"context"
	"fmt"
	"net"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/vishvananda/netlink"
)

// PreparePeer makes the pair of spec: the host end (HostIfName, alias
// Alias, so List, Detach and the agent's adoption treat it like any
// attachment) on the bridge and up, the other end (PeerIfName) left down
// in the host namespace with the same MTU. It is idempotent: a pair of
// this identity whose other end is still in the host namespace is adopted
// and fixed; one whose other end went elsewhere (an earlier sandbox) is
// replaced. On error nothing this call created is left. The address,
// routes and the move into the container are the runtime's job.
func PreparePeer(ctx context.Context, spec PeerSpec) (PeerResult, error) {
	spec, err := spec.normalize()
	if err != nil {
		return PeerResult{}, err
	}
	host, err := kernel.OpenNS(spec.HostNetns)
	if err != nil {
		return PeerResult{}, err
	}
	defer host.Close()
	a := &attacher{spec: Spec{Bridge: spec.Bridge, MTU: spec.MTU, ContainerID: spec.ContainerID, IfName: spec.IfName},
		host: host, hostIf: HostIfName(spec.ContainerID, spec.IfName)}
	if err := a.checkBridge(); err != nil {
		return PeerResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return PeerResult{}, err
	}
	peerIf := PeerIfName(spec.ContainerID, spec.IfName)
	if err := a.findOrCreatePeer(peerIf); err != nil {
		return PeerResult{}, err
	}
	if err := a.configurePeer(); err != nil {
		return PeerResult{}, a.rollback(err)
	}
	return PeerResult{HostIf: a.hostIf, PeerIf: peerIf, MAC: a.ctrLink.Attrs().HardwareAddr, MTU: a.mtu}, nil
}

// findOrCreatePeer adopts a pair of this identity whose peer is still in
// the host namespace, or (re)creates it.
func (a *attacher) findOrCreatePeer(peerIf string) error {
	want := Alias(a.spec.ContainerID, a.spec.IfName)
	h, err := a.host.H.LinkByName(a.hostIf)
	if err != nil && !kernel.IsNotFound(err) {
		return fmt.Errorf("looking up %s: %w", a.hostIf, err)
	}
	p, perr := a.host.H.LinkByName(peerIf)
	if perr != nil && !kernel.IsNotFound(perr) {
		return fmt.Errorf("looking up %s: %w", peerIf, perr)
	}
	if h != nil {
		if h.Attrs().Alias != want {
			return fmt.Errorf("host interface %s exists but is not the attachment of %s/%s (alias %q); remove it by hand",
				a.hostIf, a.spec.ContainerID, a.spec.IfName, h.Attrs().Alias)
		}
		if p != nil && p.Type() == "veth" && h.Attrs().ParentIndex == p.Attrs().Index && p.Attrs().ParentIndex == h.Attrs().Index {
			a.hostLink, a.ctrLink = h, p
			return nil
		}
		if err := kernel.DeleteLink(a.host, a.hostIf); err != nil {
			return err
		}
		if p, err = a.host.H.LinkByName(peerIf); err != nil && !kernel.IsNotFound(err) {
			return fmt.Errorf("looking up %s: %w", peerIf, err)
		}
	}
	if p != nil {
		return fmt.Errorf("interface %s exists in the host namespace but is not the peer of %s; remove it by hand", peerIf, a.hostIf)
	}
	a.hostLink, a.ctrLink, err = kernel.CreateVeth(a.host, kernel.VethSpec{
		Name: a.hostIf, PeerName: peerIf, MTU: a.mtu, Alias: want, Master: a.bridge,
	})
	if err != nil {
		return fmt.Errorf("preparing the interface of %s: %w", a.spec.ContainerID, err)
	}
	a.created = true
	return nil
}

// configurePeer sets the MTU of both ends and brings the host end up on the
// bridge; the other end comes up when the runtime configures it.
func (a *attacher) configurePeer() error {
	h := a.hostLink
	if h.Attrs().MasterIndex != a.bridge.Attrs().Index {
		if err := a.host.H.LinkSetMaster(h, a.bridge); err != nil {
			return fmt.Errorf("putting %s on bridge %s: %w", a.hostIf, a.spec.Bridge, err)
		}
	}
	for _, l := range []netlink.Link{h, a.ctrLink} {
		if l.Attrs().MTU != a.mtu {
			if err := a.host.H.LinkSetMTU(l, a.mtu); err != nil {
				return fmt.Errorf("setting mtu %d on %s: %w", a.mtu, l.Attrs().Name, err)
			}
		}
	}
	if h.Attrs().Flags&net.FlagUp == 0 {
		if err := a.host.H.LinkSetUp(h); err != nil {
			return fmt.Errorf("bringing %s up: %w", a.hostIf, err)
		}
	}
	return nil
}
