package agent

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/ipam"
)

// A container attached with `flatmesh attach` is identified by its network
// namespace's identity: its allocation's ID is "netns:DEV:INODE" of the
// namespace's nsfs file (kernel.NetnsID), whatever path, name or PID it was
// attached by. The path is carried beside it (netnsPaths) for listings and
// for entering the namespace. The kernel side carries the ID too: the host
// end's alias and the hash in its name (package attach).
//
// Inode reuse: the kernel may give a new namespace the inode of a freed one.
// While a namespace lives its inode is its own, and our veth pair lives
// exactly as long as the container end's namespace (destroying it destroys
// the pair). So an allocation whose host veth exists names a live
// namespace, and one whose veth is gone names a dead one (or an interface
// removed by hand): the garbage collection releases the latter, and an
// attach that finds an allocation of its ID without a veth releases it first
// and allocates afresh (dropStale), so a new namespace never inherits the
// address or name of a dead one with the same inode.
//
// Allocations made before this (ID = the first path the namespace was
// attached by) are rekeyed in place when the agent starts (rekeyLegacy):
// same address, same veth, no detach. One that cannot be rekeyed keeps its
// path ID and is still found by identity (sameNetns).

// netnsPaths remembers the path each namespace ID was attached by. Safe for
// concurrent use; the zero value is ready.
type netnsPaths struct {
	mu sync.Mutex
	m  map[string]string
}

func (p *netnsPaths) set(id, path string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]string{}
	}
	p.m[id] = path
}

func (p *netnsPaths) drop(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, id)
}

func (p *netnsPaths) get(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[id]
}

// netnsPath returns a path that holds the namespace of allocation ID id now:
// the one it was attached by while it still holds that namespace, else one
// found by looking (after a restart, or once a PID exited), else "". IDs
// that are not namespace identities are returned as they are (a legacy
// path; CNI and Docker IDs are not paths and never entered).
func (a *Agent) netnsPath(id string) string {
	nid, ok := kernel.ParseNetnsID(id)
	if !ok {
		return id
	}
	if p := a.nsPaths.get(id); p != "" && kernel.HoldsNetns(p, nid) {
		return p
	}
	p, found := kernel.FindNetnsPath(nid)
	if !found {
		return ""
	}
	a.nsPaths.set(id, p)
	return p
}

// allocationIDFor returns the ID of the allocation that already holds the
// namespace ns (a legacy path ID found by identity included), or ns's
// identity for a namespace seen for the first time.
func (a *Agent) allocationIDFor(ns kernel.Netns) string {
	for _, al := range a.ipam.Allocations() {
		if !strings.HasPrefix(al.ID, foreignPrefix) && sameNetns(al.ID, ns) {
			return al.ID
		}
	}
	return ns.ID.String()
}

// sameNetns reports whether the allocation ID id names the namespace ns:
// by identity for "netns:" IDs, by stat of the path for legacy path IDs.
func sameNetns(id string, ns kernel.Netns) bool {
	if _, ok := kernel.ParseNetnsID(id); ok {
		return id == ns.ID.String()
	}
	if id == ns.Path {
		return true
	}
	if !strings.HasPrefix(id, "/") {
		return false
	}
	other, err := kernel.StatNetns(id)
	return err == nil && other.ID == ns.ID
}

// dropStale releases the allocation of a namespace ID whose veth is gone
// (its namespace died and the inode came back for another one, or the
// interface was removed by hand), so the attach starts afresh; it reports
// whether the allocation is still there. The caller has marked (id, ifname)
// pending, so neither the garbage collection nor a detach races it.
func (a *Agent) dropStale(ctx context.Context, req ipam.Request) (bool, error) {
	found, err := a.ctrs.List(ctx, "")
	if err != nil {
		return false, err
	}
	for _, f := range found {
		if f.ContainerID == req.ID && f.IfName == req.IfName {
			return true, nil
		}
	}
	al, _ := a.ipam.Lookup(req.ID, req.IfName)
	if err := a.ipam.Release(req.ID, req.IfName); err != nil {
		return true, fmt.Errorf("releasing the stale address of %s: %w", req.ID, err)
	}
	a.log.Info("namespace identity seen again without its veth (a new namespace reusing the inode, or the interface was removed): stale address released",
		"id", req.ID, "name", al.Name, "ip", al.Prefix)
	return false, nil
}

// rekeyLegacy gives every attachment made under a namespace path (before
// IDs were namespace identities) its namespace's identity, in place: the
// veth is rekeyed first (alias and altname), then the allocation renamed,
// so a crash in between leaves a veth whose legacy name still points back
// to the allocation, which the next start finishes. The caller holds the
// kernel lock; it runs before the first pass (whose garbage collection
// would otherwise take a half-rekeyed allocation for a vanished one).
func (a *Agent) rekeyLegacy(ctx context.Context) {
	found, err := a.ctrs.List(ctx, "")
	if err != nil {
		a.log.Warn("listing attachments to rekey", "error", err)
		return
	}
	byHost := map[string]attach.Attachment{}
	for _, f := range found {
		byHost[f.HostIf] = f
	}
	for _, al := range a.ipam.Allocations() {
		if !strings.HasPrefix(al.ID, "/") {
			continue
		}
		f, ok := byHost[attach.HostIfName(al.ID, al.IfName)]
		if !ok || f.IfName != al.IfName {
			continue // vanished: the garbage collection releases it
		}
		if err := a.rekeyOne(ctx, al, f); err != nil {
			a.log.Warn("attachment keeps its path as its ID", "id", al.ID, "name", al.Name, "error", err)
		}
	}
}

// rekeyOne rekeys the legacy allocation al whose veth is f.
func (a *Agent) rekeyOne(ctx context.Context, al ipam.Allocation, f attach.Attachment) error {
	newID, path := f.ContainerID, ""
	if _, done := kernel.ParseNetnsID(newID); !done {
		if f.ContainerID != al.ID {
			return fmt.Errorf("host interface %s carries %q", f.HostIf, f.ContainerID)
		}
		ns, err := kernel.StatNetns(al.ID)
		if err != nil {
			return err
		}
		newID, path = ns.ID.String(), ns.Path
		if err := a.ctrs.Rekey(ctx, attach.RekeySpec{OldID: al.ID, NewID: newID, IfName: al.IfName, Netns: ns.Path}); err != nil {
			return err
		}
	}
	if err := a.ipam.Rename(al.ID, al.IfName, newID, al.IfName, al.Name); err != nil {
		return err
	}
	if path != "" {
		a.nsPaths.set(newID, path)
	}
	a.log.Info("attachment rekeyed by namespace identity", "name", al.Name, "old_id", al.ID, "id", newID, "ip", al.Prefix)
	return nil
}
