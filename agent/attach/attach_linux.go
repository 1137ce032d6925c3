package attach

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/vishvananda/netlink"
)

// Attach connects the container to the bridge (see the package doc). It is
// idempotent: attaching the same ContainerID and IfName again adopts the
// existing pair, fixes whatever differs from spec (MTU, bridge, address,
// default route, link state) and returns the same Result. On error,
// whatever this call created is removed again: no stray veth is left; a
// pair adopted from an earlier attach is left in place. Calls for different
// containers may run concurrently; calls for the same one must not.
func Attach(ctx context.Context, spec Spec) (Result, error) {
	spec, err := spec.normalize()
	if err != nil {
		return Result{}, err
	}
	path, err := kernel.ResolveNetns(spec.Netns)
	if err != nil {
		return Result{}, err
	}
	host, err := kernel.OpenNS(spec.HostNetns)
	if err != nil {
		return Result{}, err
	}
	defer host.Close()
	ctr, err := kernel.OpenNS(path)
	if err != nil {
		return Result{}, err
	}
	defer ctr.Close()
	a := &attacher{spec: spec, host: host, ctr: ctr, hostIf: HostIfName(spec.ContainerID, spec.IfName)}
	if err := a.checkBridge(); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if err := a.findOrCreate(); err != nil {
		return Result{}, err
	}
	if err := a.configure(); err != nil {
		return Result{}, a.rollback(err)
	}
	if spec.GratuitousARP {
		if err := a.announce(); err != nil {
			return Result{}, a.rollback(err)
		}
	}
	c, err := ctr.H.LinkByName(spec.IfName)
	if err != nil {
		return Result{}, a.rollback(fmt.Errorf("looking up %s in %s: %w", spec.IfName, path, err))
	}
	return Result{ContainerID: spec.ContainerID, Name: spec.Name, HostIf: a.hostLink.Attrs().Name, IfName: spec.IfName,
		MAC: c.Attrs().HardwareAddr, MTU: c.Attrs().MTU, Netns: path, Address: spec.Address, Gateway: spec.Gateway}, nil
}

type attacher struct {
	spec      Spec
	host, ctr *kernel.NS
	hostIf    string
	bridge    netlink.Link
	mtu       int
	hostLink  netlink.Link
	ctrLink   netlink.Link
	created   bool
}

// checkBridge finds the bridge, settles the MTU and refuses an address the
// bridge itself holds.
func (a *attacher) checkBridge() error {
	br, err := a.host.H.LinkByName(a.spec.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s not found in %s: %w", a.spec.Bridge, a.host, err)
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("%s is a %s, not a bridge", a.spec.Bridge, br.Type())
	}
	a.bridge, a.mtu = br, a.spec.MTU
	if a.mtu == 0 {
		a.mtu = br.Attrs().MTU
	}
	addrs, err := a.host.H.AddrList(br, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("listing addresses of bridge %s: %w", a.spec.Bridge, err)
	}
	for _, ad := range addrs {
		if ip, ok := netip.AddrFromSlice(ad.IP); ok && ip.Unmap() == a.spec.Address.Addr() {
			return fmt.Errorf("address %s is already assigned to bridge %s (the host's gateway); pick another",
				a.spec.Address.Addr(), a.spec.Bridge)
		}
	}
	return nil
}

// findOrCreate adopts an existing pair of this identity or creates one.
func (a *attacher) findOrCreate() error {
	want := Alias(a.spec.ContainerID, a.spec.IfName)
	h, err := a.host.H.LinkByName(a.hostIf)
	if err != nil && !kernel.IsNotFound(err) {
		return fmt.Errorf("looking up %s: %w", a.hostIf, err)
	}
	c, cerr := a.ctr.H.LinkByName(a.spec.IfName)
	if cerr != nil && !kernel.IsNotFound(cerr) {
		return fmt.Errorf("looking up %s in %s: %w", a.spec.IfName, a.ctr.Path, cerr)
	}
	if h != nil {
		if h.Attrs().Alias != want {
			return fmt.Errorf("host interface %s exists but is not the attachment of %s/%s (alias %q); remove it by hand",
				a.hostIf, a.spec.ContainerID, a.spec.IfName, h.Attrs().Alias)
		}
		if c != nil && c.Type() == "veth" && h.Attrs().ParentIndex == c.Attrs().Index && c.Attrs().ParentIndex == h.Attrs().Index {
			a.hostLink, a.ctrLink = h, c
			return nil
		}
		// Ours, but its peer is not in this namespace (say the container
		// restarted with a fresh one): replace it.
		if err := kernel.DeleteLink(a.host, a.hostIf); err != nil {
			return err
		}
	}
	if c != nil {
		return fmt.Errorf("interface %s already exists in %s; choose another --ifname: %w", a.spec.IfName, a.ctr.Path, ErrIfNameTaken)
	}
	a.hostLink, a.ctrLink, err = kernel.CreateVeth(a.host, kernel.VethSpec{
		Name: a.hostIf, PeerName: a.spec.IfName, PeerNS: a.ctr, MTU: a.mtu, Alias: want, Master: a.bridge,
	})
	if err != nil {
		return fmt.Errorf("attaching %s: %w", a.spec.ContainerID, err)
	}
	a.created = true
	return nil
}

// configure brings both ends to the spec: MTU, bridge, up, lo up, address
// and default route (reconciled, so stale ones of an earlier spec go).
func (a *attacher) configure() error {
	h, c := a.hostLink, a.ctrLink
	if h.Attrs().MasterIndex != a.bridge.Attrs().Index {
		if err := a.host.H.LinkSetMaster(h, a.bridge); err != nil {
			return fmt.Errorf("putting %s on bridge %s: %w", a.hostIf, a.spec.Bridge, err)
		}
	}
	for _, x := range []struct {
		ns   *kernel.NS
		link netlink.Link
	}{{a.host, h}, {a.ctr, c}} {
		if x.link.Attrs().MTU != a.mtu {
			if err := x.ns.H.LinkSetMTU(x.link, a.mtu); err != nil {
				return fmt.Errorf("setting mtu %d on %s: %w", a.mtu, x.link.Attrs().Name, err)
			}
		}
	}
	lo, err := a.ctr.H.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("looking up lo in %s: %w", a.ctr.Path, err)
	}
	for _, x := range []struct {
		ns   *kernel.NS
		link netlink.Link
	}{{a.ctr, lo}, {a.ctr, c}, {a.host, h}} {
		if x.link.Attrs().Flags&net.FlagUp == 0 {
			if err := x.ns.H.LinkSetUp(x.link); err != nil {
				return fmt.Errorf("bringing %s up: %w", x.link.Attrs().Name, err)
			}
		}
	}
	if _, err := kernel.Reconcile(a.ctr, a.containerState(), kernel.Scope{
		AddrLinks: []string{a.spec.IfName}, RouteLinks: []string{a.spec.IfName},
	}); err != nil {
		return fmt.Errorf("configuring %s in %s: %w", a.spec.IfName, a.ctr.Path, err)
	}
	return nil
}

// containerState is the address and default route inside the container.
func (a *attacher) containerState() kernel.State {
	st := kernel.State{Addrs: []kernel.Addr{{Dev: a.spec.IfName, Prefix: a.spec.Address}}}
	if gw := a.spec.Gateway; gw.IsValid() {
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		st.Routes = []kernel.Route{{Dst: def, Gw: gw, Dev: a.spec.IfName, OnLink: !a.spec.Address.Masked().Contains(gw)}}
	}
	return st
}

// announce sends the gratuitous ARP once both ends are operationally up
// (before that the kernel may drop it; SendGratuitousARP waits for the
// container end itself).
func (a *attacher) announce() error {
	if err := kernel.WaitOperUp(a.host, a.hostIf, operUpTimeout); err != nil {
		return err
	}
	return kernel.SendGratuitousARP(a.ctr.Path, a.spec.IfName, a.spec.Address.Addr())
}

// operUpTimeout bounds the wait for a new veth to come up (the kernel's
// link watch runs at most about a second late).
const operUpTimeout = 3 * time.Second

// rollback removes the pair when this call created it.
func (a *attacher) rollback(err error) error {
	if !a.created {
		return err
	}
	if derr := kernel.DeleteLink(a.host, a.hostIf); derr != nil {
		return errors.Join(err, fmt.Errorf("removing half-made %s: %w", a.hostIf, derr))
	}
	return err
}

// Detach removes the attachment: deleting the host end deletes the pair,
// and with it the container's address and routes. An attachment that is
// already gone is not an error. A host interface of that name that carries
// another identity is refused. Idempotent.
func Detach(ctx context.Context, spec DetachSpec) error {
	return DetachMany(ctx, spec.HostNetns, []DetachSpec{spec})[0]
}

// DetachMany is Detach for many attachments in hostNetns at once (each
// spec's HostNetns is ignored): the pairs are deleted in one kernel batch
// (kernel.DeleteLinks), which costs about what deleting one does. The
// errors are per spec, in order.
func DetachMany(ctx context.Context, hostNetns string, specs []DetachSpec) []error {
	errs := make([]error, len(specs))
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	host, err := kernel.OpenNS(hostNetns)
	if err != nil {
		return fail(err)
	}
	defer host.Close()
	var links []netlink.Link
	var which []int
	for i, spec := range specs {
		l, err := detachLink(host, spec)
		if err != nil || l == nil {
			errs[i] = err
			continue
		}
		links, which = append(links, l), append(which, i)
	}
	if err := kernel.DeleteLinks(host, links); err != nil {
		for _, i := range which {
			errs[i] = err
		}
	}
	return errs
}

// detachLink finds the host end of spec's attachment; nil when it is gone.
func detachLink(host *kernel.NS, spec DetachSpec) (netlink.Link, error) {
	if spec.IfName == "" {
		spec.IfName = DefaultIfName
	}
	if err := ValidateContainerID(spec.ContainerID); err != nil {
		return nil, err
	}
	name := HostIfName(spec.ContainerID, spec.IfName)
	h, err := host.H.LinkByName(name)
	if kernel.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", name, err)
	}
	if want := Alias(spec.ContainerID, spec.IfName); h.Attrs().Alias != want {
		return nil, fmt.Errorf("host interface %s is not the attachment of %s/%s (alias %q); leaving it alone",
			name, spec.ContainerID, spec.IfName, h.Attrs().Alias)
	}
	return h, nil
}

// List returns the attachments in the host namespace: every veth whose
// alias flatmesh wrote, on bridge (or on any bridge, or none, when bridge is
// ""). A container whose namespace vanished is absent (the kernel destroyed
// the pair); the agent releases its address. Read-only; safe to call at
// any time.
func List(ctx context.Context, hostNetns, bridge string) ([]Attachment, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	host, err := kernel.OpenNS(hostNetns)
	if err != nil {
		return nil, err
	}
	defer host.Close()
	links, err := host.H.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []Attachment
	for _, l := range links {
		at := l.Attrs()
		id, ifname, ok := ParseAlias(at.Alias)
		if !ok || l.Type() != "veth" || !strings.HasPrefix(at.Name, "fm") {
			continue
		}
		master := names[at.MasterIndex]
		if bridge != "" && master != bridge {
			continue
		}
		out = append(out, Attachment{ContainerID: id, IfName: ifname, HostIf: at.Name, HostIndex: at.Index,
			HostMAC: at.HardwareAddr, MTU: at.MTU, Bridge: master, Up: at.Flags&net.FlagUp != 0, PeerNetnsID: at.NetNsID})
	}
	return out, nil
}
