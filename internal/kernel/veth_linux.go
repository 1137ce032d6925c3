package kernel

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// VethSpec is a veth pair whose first end lives in the namespace passed to
// CreateVeth and whose peer is created directly in PeerNS.
type VethSpec struct {
	Name     string           // this end, in the caller's namespace
	PeerName string           // the other end, in PeerNS
	PeerNS   *NS              // namespace of the other end; nil = the same one
	MTU      int              // both ends; 0 = kernel default
	MAC      net.HardwareAddr // this end; nil = random
	PeerMAC  net.HardwareAddr // the other end; nil = random
	Alias    string           // ifalias of this end (identity for adoption)
	Master   netlink.Link     // bridge to put this end on; nil = none
}

// Validate checks names, MTU and alias length.
func (s VethSpec) Validate() error {
	if err := ValidateIfName(s.Name); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	if err := ValidateIfName(s.PeerName); err != nil {
		return fmt.Errorf("veth peer: %w", err)
	}
	if s.MTU < 0 || s.MTU > 65535 {
		return fmt.Errorf("veth %s: mtu %d out of range", s.Name, s.MTU)
	}
	if len(s.Alias) > 255 {
		return fmt.Errorf("veth %s: alias is %d bytes, at most 255", s.Name, len(s.Alias))
	}
	return nil
}

// CreateVeth creates the pair in one netlink request (both ends appear
// together or not at all), attached to Master when given, both ends down.
// If anything fails after the pair exists it is deleted again, so an error
// never leaves a stray veth. A name already taken on either side fails with
// EEXIST in the error chain. Not idempotent: callers look for an existing
// pair first.
func CreateVeth(ns *NS, spec VethSpec) (host, peer netlink.Link, err error) {
	if err := spec.Validate(); err != nil {
		return nil, nil, err
	}
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: spec.Name, MTU: spec.MTU, HardwareAddr: spec.MAC},
		PeerName:         spec.PeerName,
		PeerHardwareAddr: spec.PeerMAC,
		PeerMTU:          uint32(spec.MTU),
	}
	if spec.Master != nil {
		veth.MasterIndex = spec.Master.Attrs().Index
	}
	peerNS := ns
	if spec.PeerNS != nil {
		peerNS = spec.PeerNS
		fd, err := openNetnsFD(spec.PeerNS.Path)
		if err != nil {
			return nil, nil, err
		}
		defer fd.Close()
		veth.PeerNamespace = netlink.NsFd(int(fd))
	}
	if err := ns.H.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, nil, fmt.Errorf("creating veth %s/%s: a link with one of these names already exists: %w",
				spec.Name, spec.PeerName, err)
		}
		return nil, nil, fmt.Errorf("creating veth %s/%s: %w", spec.Name, spec.PeerName, err)
	}
	defer func() {
		if err != nil {
			if derr := DeleteLink(ns, spec.Name); derr != nil {
				err = errors.Join(err, fmt.Errorf("rolling back veth %s: %w", spec.Name, derr))
			}
		}
	}()
	if host, err = ns.H.LinkByName(spec.Name); err != nil {
		return nil, nil, fmt.Errorf("looking up new veth %s: %w", spec.Name, err)
	}
	if spec.Alias != "" && host.Attrs().Alias != spec.Alias {
		// The kernel ignores IFLA_IFALIAS in a create request.
		if err = ns.H.LinkSetAlias(host, spec.Alias); err != nil {
			return nil, nil, fmt.Errorf("setting alias of veth %s: %w", spec.Name, err)
		}
		host.Attrs().Alias = spec.Alias
	}
	if peer, err = peerNS.H.LinkByName(spec.PeerName); err != nil {
		return nil, nil, fmt.Errorf("looking up new veth peer %s in %s: %w", spec.PeerName, peerNS, err)
	}
	return host, peer, nil
}

// openNetnsFD opens a namespace file; "" is the agent's own namespace.
func openNetnsFD(path string) (netns.NsHandle, error) {
	var h netns.NsHandle
	var err error
	if path == "" {
		h, err = netns.GetFromPid(os.Getpid())
	} else {
		h, err = netns.GetFromPath(path)
	}
	if err != nil {
		return h, fmt.Errorf("opening network namespace %q: %w", path, err)
	}
	return h, nil
}
