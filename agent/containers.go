package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/agent/docker"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/ipam"
)

// foreignPrefix marks allocations that hold an address a device that is not
// ours answered for (flat mode's ARP probe), so it is never handed out.
const foreignPrefix = "foreign:"

// maxProbeSkips bounds how many addresses in use by foreign devices one
// attach skips before giving up.
const maxProbeSkips = 16

// A container attached with `flatmesh attach` is identified by its network
// namespace's identity; see containers_ids.go.

func (a *Agent) handleAttach(r *http.Request) (any, error) {
	var req api.AttachRequest
	if err := api.Decode(r, &req); err != nil {
		return nil, err
	}
	if !a.plane.Capabilities().Attach {
		return nil, api.BadRequest(fmt.Errorf("the %s data plane cannot attach containers now (not built yet, or restored)", a.cfg.Mode))
	}
	ns, ifname, want, err := a.validateAttach(req)
	if err != nil {
		return nil, api.BadRequest(err)
	}
	name := req.Name
	if name == "" {
		name = strings.TrimPrefix(ns.Path, kernel.NetnsDir+"/")
	}
	return a.attachNetns(r.Context(), ipam.Request{ID: a.allocationIDFor(ns), IfName: ifname, Name: name, Want: want}, ns.Path)
}

// attachNetns allocates (waiting for a block and probing the LAN when the
// plane asks for it, without the kernel lock), then plugs the container in
// netns with the kernel lock held. req.ID is the container's identity (the
// namespace for attach, the runtime's container ID for CNI). On failure
// nothing is left: no veth, no new allocation.
func (a *Agent) attachNetns(ctx context.Context, req ipam.Request, netns string) (api.Attachment, error) {
	if !a.beginAttach(req.ID, req.IfName) {
		return api.Attachment{}, &api.StatusError{Code: http.StatusConflict,
			Err: fmt.Errorf("an attach of %s %s is already in progress", req.ID, req.IfName)}
	}
	defer a.endAttach(req.ID, req.IfName)
	if err := a.awaitDeleted(ctx, req.ID); err != nil { // a detach of it still deleting its pair
		return api.Attachment{}, err
	}
	_, existed := a.ipam.Lookup(req.ID, req.IfName)
	if _, isNetns := kernel.ParseNetnsID(req.ID); existed && isNetns {
		var err error
		if existed, err = a.dropStale(ctx, req); err != nil {
			return api.Attachment{}, err
		}
	}
	al, err := a.allocateProbed(ctx, req)
	if err != nil {
		return api.Attachment{}, err
	}
	if existed && al.Name != req.Name && req.Name != "" {
		al.Name = req.Name // the kernel side is what matters; the name is for listings
	}
	a.awaitFirstPass(ctx)
	res, err := a.plugIn(ctx, a.attachSpec(al, netns))
	if err != nil {
		if !existed {
			if rerr := a.ipam.Release(req.ID, req.IfName); rerr != nil {
				a.log.Error("releasing the address of a failed attach", "error", rerr)
			}
		}
		return api.Attachment{}, fmt.Errorf("attaching %s: %w", req.ID, err)
	}
	if _, isNetns := kernel.ParseNetnsID(req.ID); isNetns {
		a.nsPaths.set(req.ID, res.Netns)
	}
	a.log.Info("container attached", "name", al.Name, "netns", netns, "ip", res.Address, "host_if", res.HostIf)
	a.poke() // publish its name
	a.awaitReady(ctx, al.Prefix.Masked())
	return a.attachmentOut(al, res.HostIf, res.MAC.String(), res.MTU), nil
}

// allocateProbed allocates an address; in flat mode it first asks the LAN
// whether a device that is not ours already uses it (RFC 5227 probe). Such
// an address is kept by a "foreign" allocation and the next one is tried.
func (a *Agent) allocateProbed(ctx context.Context, req ipam.Request) (ipam.Allocation, error) {
	if al, ok := a.ipam.Lookup(req.ID, req.IfName); ok {
		return al, nil
	}
	for i := 0; ; i++ {
		al, err := a.allocate(ctx, req)
		if err != nil {
			return ipam.Allocation{}, err
		}
		if !a.plane.Capabilities().ProbesLAN {
			return al, nil
		}
		inUse, err := a.plane.Probe(ctx, al.Prefix.Addr())
		if err != nil {
			_ = a.ipam.Release(req.ID, req.IfName)
			return ipam.Allocation{}, fmt.Errorf("probing %s on the LAN: %w", al.Prefix.Addr(), err)
		}
		if !inUse {
			return al, nil
		}
		a.log.Warn("address answered on the LAN: a device that is not ours uses it; skipping it for good", "addr", al.Prefix.Addr())
		if err := a.ipam.Rename(req.ID, req.IfName, foreignPrefix+al.Prefix.Addr().String(), "lan", "foreign device"); err != nil {
			return ipam.Allocation{}, err
		}
		if req.Want.IsValid() {
			return ipam.Allocation{}, fmt.Errorf("address %s is already used by another device on the LAN", req.Want)
		}
		if i+1 >= maxProbeSkips {
			return ipam.Allocation{}, fmt.Errorf("%d addresses in a row answered on the LAN: is --flat-range overlapping a DHCP pool? exclude it with --flat-exclude", maxProbeSkips)
		}
	}
}

func (a *Agent) handleDetach(r *http.Request) (any, error) {
	var req api.DetachRequest
	if err := api.Decode(r, &req); err != nil {
		return nil, err
	}
	var matched []ipam.Allocation
	ns, nserr := kernel.StatNetns(req.Target) // never blocks on a FIFO or a device
	for _, al := range a.ipam.Allocations() {
		if strings.HasPrefix(al.ID, foreignPrefix) {
			continue
		}
		if al.Name == req.Target || al.ID == req.Target || (nserr == nil && sameNetns(al.ID, ns)) ||
			(strings.HasPrefix(req.Target, "/") && a.nsPaths.get(al.ID) == req.Target) {
			matched = append(matched, al)
		}
	}
	if len(matched) == 0 {
		return nil, api.NotFound(fmt.Errorf("no container %q is attached on this host (give its name or namespace; see flatmesh containers)", req.Target))
	}
	for _, al := range matched {
		if a.isPending(al.ID, al.IfName) {
			return nil, &api.StatusError{Code: http.StatusConflict,
				Err: fmt.Errorf("%s %s is being attached right now; detach it once the attach is done", al.Name, al.IfName)}
		}
	}
	return a.detachBatched(r.Context(), matched, nil)
}

// detached forgets al's namespace path, logs its detach and returns the
// answer for it (its pair is gone or going, its address released).
func (a *Agent) detached(al ipam.Allocation) api.Attachment {
	a.nsPaths.drop(al.ID)
	a.log.Info("container detached", "name", al.Name, "id", al.ID, "ip", al.Prefix)
	return a.attachmentOut(al, attach.HostIfName(al.ID, al.IfName), "", 0)
}

func (a *Agent) handleContainers(r *http.Request) (any, error) {
	return a.listContainers(r.Context())
}

// attached pairs each allocation with its attachment in the kernel;
// allocations without one (a container being attached, or one whose
// namespace vanished) are left out.
func (a *Agent) attached(ctx context.Context) ([]ipam.Allocation, []attach.Attachment, error) {
	found, err := a.ctrs.List(ctx, a.plane.Bridge())
	if err != nil {
		return nil, nil, err
	}
	byKey := map[string]attach.Attachment{}
	for _, f := range found {
		byKey[f.ContainerID+"\x00"+f.IfName] = f
	}
	var als []ipam.Allocation
	var ats []attach.Attachment
	for _, al := range a.ipam.Allocations() {
		if f, ok := byKey[al.ID+"\x00"+al.IfName]; ok {
			als, ats = append(als, al), append(ats, f)
		}
	}
	return als, ats, nil
}

// listContainers is attached plus what only the container's namespace
// knows (its MAC), for `flatmesh containers`.
func (a *Agent) listContainers(ctx context.Context) ([]api.Attachment, error) {
	als, ats, err := a.attached(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.Attachment{}
	for i, al := range als {
		out = append(out, a.attachmentOut(al, ats[i].HostIf, containerMAC(a.netnsPath(al.ID), al.IfName), ats[i].MTU))
	}
	return out, nil
}

// containerMAC reads the container end's MAC from inside its namespace.
func containerMAC(netnsPath, ifname string) string {
	if netnsPath == "" {
		return ""
	}
	ns, err := kernel.OpenNS(netnsPath)
	if err != nil {
		return ""
	}
	defer ns.Close()
	l, err := ns.H.LinkByName(ifname)
	if err != nil {
		return ""
	}
	return l.Attrs().HardwareAddr.String()
}

func (a *Agent) attachmentOut(al ipam.Allocation, hostIf, mac string, mtu int) api.Attachment {
	gw := ""
	if g := a.plane.Gateway(al); g.IsValid() {
		gw = g.String()
	}
	out := api.Attachment{ID: al.ID, Name: al.Name, Netns: a.netnsPath(al.ID), IfName: al.IfName, IP: a.plane.Address(al).String(),
		Gateway: gw, MAC: mac, MTU: mtu, HostIf: hostIf, DNS: a.dnsServers(al)}
	if len(out.DNS) > 0 {
		out.DNSDomain = a.cfg.DNSDomain
	}
	return out
}

// collectGarbage releases the addresses of containers whose namespace
// vanished (the kernel destroyed their veth pair), leaving alone the
// attachments in flight. The caller holds the kernel lock, so an attach
// cannot plug its veth in between the listing and the release.
func (a *Agent) collectGarbage(ctx context.Context) {
	found, err := a.ctrs.List(ctx, "")
	if err != nil {
		a.log.Warn("listing attachments", "error", err)
		return
	}
	present := map[string]bool{}
	for _, f := range found {
		present[f.ContainerID+"\x00"+f.IfName] = true
	}
	released := false
	for _, al := range a.ipam.Allocations() {
		if strings.HasPrefix(al.ID, foreignPrefix) || docker.IsDockerID(al.ID) || present[al.ID+"\x00"+al.IfName] || a.isPending(al.ID, al.IfName) {
			continue
		}
		if err := a.ipam.Release(al.ID, al.IfName); err != nil && !errors.Is(err, context.Canceled) {
			a.log.Warn("releasing the address of a vanished container", "id", al.ID, "error", err)
			continue
		}
		a.nsPaths.drop(al.ID)
		a.log.Info("container vanished: address released", "name", al.Name, "ip", al.Prefix)
		released = true
	}
	if released {
		a.afterIPAMChange()
	}
	a.sweepCutOff(ctx, found)
}

// detachAll removes every attachment on bridge (for a purge).
func detachAll(ctx context.Context, bridge string) error {
	found, err := attach.List(ctx, "", bridge)
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range found {
		errs = append(errs, attach.Detach(ctx, attach.DetachSpec{ContainerID: f.ContainerID, IfName: f.IfName}))
	}
	return errors.Join(errs...)
}
