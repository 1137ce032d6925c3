package attach

import (
	"context"
	"fmt"
	"net"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/vishvananda/netlink"
)

// Check compares the attachment of spec with spec and changes nothing: the
// host end exists with our alias, sits on the bridge, is up with the MTU;
// the container end exists in spec.Netns, is the host end's veth peer, is
// up with the MTU, and carries exactly the address and default route
// Attach sets (computed by the same code). Differences land in the
// Report's Drift; an error means Check could not look (the host namespace
// or the bridge cannot be read). Read-only; safe to run concurrently with
// anything.
func Check(ctx context.Context, spec Spec) (Report, error) {
	spec, err := spec.normalize()
	if err != nil {
		return Report{}, err
	}
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	host, err := kernel.OpenNS(spec.HostNetns)
	if err != nil {
		return Report{}, err
	}
	defer host.Close()
	a := &attacher{spec: spec, host: host, hostIf: HostIfName(spec.ContainerID, spec.IfName)}
	rep := Report{HostIf: a.hostIf}
	if err := a.checkBridge(); err != nil {
		return rep, err
	}
	h, err := a.checkHostEnd(&rep)
	if err != nil || h == nil {
		return rep, err
	}
	path, err := kernel.ResolveNetns(spec.Netns)
	if err != nil {
		rep.add(DriftInterfaceMissing, "the container's namespace is gone (%v): the container no longer exists; DEL it", err)
		return rep, nil
	}
	ctr, err := kernel.OpenNS(path)
	if err != nil {
		return rep, err
	}
	defer ctr.Close()
	a.ctr = ctr
	if c, err := a.checkContainerEnd(&rep, h); err != nil || c == nil {
		return rep, err
	}
	have, err := kernel.Observe(ctr, kernel.Scope{AddrLinks: []string{spec.IfName}, RouteLinks: []string{spec.IfName}})
	if err != nil {
		return rep, fmt.Errorf("reading %s in %s: %w", spec.IfName, path, err)
	}
	plan := kernel.Diff(a.containerState(), have)
	for _, x := range plan.Add.Addrs {
		rep.add(DriftAddressWrong, "%s in %s lacks its address %s", x.Dev, path, x.Prefix)
	}
	for _, x := range plan.Del.Addrs {
		rep.add(DriftAddressWrong, "%s in %s carries %s, which flatmesh did not assign", x.Dev, path, x.Prefix)
	}
	for _, r := range plan.Add.Routes {
		rep.add(DriftRouteMissing, "route %s is missing in %s", r, path)
	}
	for _, r := range plan.Replace.Routes {
		rep.add(DriftRouteMissing, "route %s in %s was changed by hand", r, path)
	}
	for _, r := range plan.Del.Routes {
		rep.add(DriftRouteMissing, "route %s in %s was not set by flatmesh", r, path)
	}
	return rep, nil
}

// checkHostEnd finds the host end and checks it; it returns nil when the
// end is missing or not ours (the drift says which).
func (a *attacher) checkHostEnd(rep *Report) (netlink.Link, error) {
	h, err := a.host.H.LinkByName(a.hostIf)
	if kernel.IsNotFound(err) {
		rep.add(DriftInterfaceMissing, "host interface %s (the host end of %s %s) is missing", a.hostIf, a.spec.ContainerID, a.spec.IfName)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", a.hostIf, err)
	}
	if want := Alias(a.spec.ContainerID, a.spec.IfName); h.Attrs().Alias != want || h.Type() != "veth" {
		rep.add(DriftInterfaceWrong, "host interface %s is not the attachment of %s %s (alias %q)", a.hostIf, a.spec.ContainerID, a.spec.IfName, h.Attrs().Alias)
		return nil, nil
	}
	rep.HostMAC = h.Attrs().HardwareAddr
	if h.Attrs().MasterIndex != a.bridge.Attrs().Index {
		rep.add(DriftInterfaceWrong, "host interface %s is not on bridge %s", a.hostIf, a.spec.Bridge)
	}
	checkLink(rep, h, a.mtu, "host interface "+a.hostIf)
	return h, nil
}

// checkContainerEnd finds the container end in a.ctr and checks it is h's
// peer, up, with the MTU; it returns nil when it is missing or not the peer.
func (a *attacher) checkContainerEnd(rep *Report, h netlink.Link) (netlink.Link, error) {
	c, err := a.ctr.H.LinkByName(a.spec.IfName)
	if kernel.IsNotFound(err) {
		rep.add(DriftInterfaceMissing, "interface %s is missing in %s", a.spec.IfName, a.ctr.Path)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up %s in %s: %w", a.spec.IfName, a.ctr.Path, err)
	}
	if c.Type() != "veth" || h.Attrs().ParentIndex != c.Attrs().Index || c.Attrs().ParentIndex != h.Attrs().Index {
		rep.add(DriftInterfaceWrong, "interface %s in %s is not the peer of host interface %s", a.spec.IfName, a.ctr.Path, a.hostIf)
		return nil, nil
	}
	rep.MAC, rep.MTU = c.Attrs().HardwareAddr, c.Attrs().MTU
	checkLink(rep, c, a.mtu, fmt.Sprintf("interface %s in %s", a.spec.IfName, a.ctr.Path))
	return c, nil
}

func checkLink(rep *Report, l netlink.Link, mtu int, what string) {
	if l.Attrs().Flags&net.FlagUp == 0 {
		rep.add(DriftInterfaceWrong, "%s is down", what)
	}
	if l.Attrs().MTU != mtu {
		rep.add(DriftInterfaceWrong, "%s has mtu %d, flatmesh set %d", what, l.Attrs().MTU, mtu)
	}
}
