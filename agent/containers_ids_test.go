package agent

import (
	"context"
	"testing"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/ipam"
)

// attachContainer attaches with req.ID as the namespace path, as attaches
// made before namespace identities were IDs did (the legacy layout).
func (a *Agent) attachContainer(ctx context.Context, req ipam.Request) (api.Attachment, error) {
	return a.attachNetns(ctx, req, req.ID)
}

func attachByHandler(t *testing.T, n *testNode, netns, name string) api.Attachment {
	t.Helper()
	out, err := n.a.handleAttach(jsonRequest(t, api.AttachRequest{Netns: netns, Name: name}))
	if err != nil {
		t.Fatalf("attach %s: %v", netns, err)
	}
	return out.(api.Attachment)
}

// An attach is keyed by the namespace's identity, not by the path given:
// the same namespace by another path finds the same allocation, the listing
// shows the path, and a detach by path, by identity or by name finds it.
func TestAttachKeyedByNamespaceIdentity(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	self, err := kernel.StatNetns("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	// validateAttach refuses the agent's own namespace; attachNetns below
	// it is what is keyed.
	id := n.a.allocationIDFor(self)
	if id != self.ID.String() {
		t.Fatalf("ID of a new namespace %q, want %q", id, self.ID.String())
	}
	first, err := n.a.attachNetns(context.Background(), ipam.Request{ID: id, IfName: "eth0", Name: "c1"}, self.Path)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != id || first.Netns != self.Path {
		t.Fatalf("attachment ID %q netns %q, want %q and %q", first.ID, first.Netns, id, self.Path)
	}
	other, err := kernel.StatNetns("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if got := n.a.allocationIDFor(other); got != id {
		t.Fatalf("the same namespace by another path got ID %q, want %q", got, id)
	}
	again, err := n.a.attachNetns(context.Background(), ipam.Request{ID: id, IfName: "eth0", Name: "c1"}, other.Path)
	if err != nil || again.IP != first.IP {
		t.Fatalf("attach again by another path: %v %+v, want address %s", err, again, first.IP)
	}
	for _, target := range []string{"/proc/thread-self/ns/net", id, "c1"} {
		if _, err := n.a.attachNetns(context.Background(), ipam.Request{ID: id, IfName: "eth0", Name: "c1"}, self.Path); err != nil {
			t.Fatal(err)
		}
		out, err := n.a.handleDetach(jsonRequest(t, api.DetachRequest{Target: target}))
		if err != nil {
			t.Fatalf("detach by %q: %v", target, err)
		}
		if got := out.([]api.Attachment); len(got) != 1 || got[0].ID != id {
			t.Fatalf("detach by %q released %+v", target, got)
		}
		n.requireDetached(t, id, "eth0")
	}
}

// Inode reuse: a namespace dies (its veth with it) and a new one gets the
// same inode before the garbage collection ran. Attaching the new one must
// not inherit the dead one's address or name.
func TestAttachAfterInodeReuseStartsAfresh(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	ctx := context.Background()
	const id = "netns:4:4026532999"
	old, err := n.a.attachNetns(ctx, ipam.Request{ID: id, IfName: "eth0", Name: "old"}, "/run/netns/old")
	if err != nil {
		t.Fatal(err)
	}
	n.kernel.vanish(id, "eth0") // the namespace died; no pass ran since
	fresh, err := n.a.attachNetns(ctx, ipam.Request{ID: id, IfName: "eth0", Name: "new"}, "/run/netns/new")
	if err != nil {
		t.Fatal(err)
	}
	if fresh.IP == old.IP || fresh.Name != "new" {
		t.Fatalf("the new namespace got %s %q, the dead one had %s %q: inherited", fresh.IP, fresh.Name, old.IP, old.Name)
	}
	if len(n.a.ipam.Allocations()) != 1 {
		t.Fatalf("allocations %+v, want only the new one", n.a.ipam.Allocations())
	}
	// The same namespace attached again with its veth in place keeps its address.
	again, err := n.a.attachNetns(ctx, ipam.Request{ID: id, IfName: "eth0", Name: "new"}, "/run/netns/new")
	if err != nil || again.IP != fresh.IP {
		t.Fatalf("attach again: %v %s, want %s", err, again.IP, fresh.IP)
	}
	// And the garbage collection keeps a live one.
	unlock := n.a.lockKernel()
	n.a.collectGarbage(ctx)
	unlock()
	if _, ok := n.a.ipam.Lookup(id, "eth0"); !ok {
		t.Fatal("the garbage collection released a live attachment")
	}
}

// An agent upgraded from path IDs adopts the attachments it finds: same
// address, same veth (rekeyed, not recreated), found again by path, by PID
// (identity) and by name; a restart in the middle of the rekey finishes it.
func TestRekeyLegacyAttachments(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	ctx := context.Background()
	const legacy = "/proc/self/ns/net" // statable without root
	old, err := n.a.attachContainer(ctx, ipam.Request{ID: legacy, IfName: "eth0", Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	// A second legacy attachment whose veth was rekeyed by an agent that
	// died before it renamed the allocation.
	const half = "/run/netns/half"
	halfAl, err := n.a.attachContainer(ctx, ipam.Request{ID: half, IfName: "eth1", Name: "c2"})
	if err != nil {
		t.Fatal(err)
	}
	const halfID = "netns:4:4026530001"
	// And one whose namespace vanished: left for the garbage collection.
	if _, err := n.a.attachContainer(ctx, ipam.Request{ID: "/run/netns/gone", IfName: "eth0", Name: "c3"}); err != nil {
		t.Fatal(err)
	}
	n.kernel.vanish("/run/netns/gone", "eth0")
	unlock := n.a.lockKernel()
	if err := n.kernel.Rekey(ctx, attach.RekeySpec{OldID: half, NewID: halfID, IfName: "eth1"}); err != nil {
		t.Fatal(err)
	}
	n.kernel.rekeys = 0
	n.a.rekeyLegacy(ctx)
	unlock()
	self, err := kernel.StatNetns(legacy)
	if err != nil {
		t.Fatal(err)
	}
	id := self.ID.String()
	al, ok := n.a.ipam.Lookup(id, "eth0")
	if !ok || al.Prefix.Addr() != mustAddr(t, old.IP) {
		t.Fatalf("allocation under %s: %v %+v, want the old address %s", id, ok, al, old.IP)
	}
	if _, ok := n.a.ipam.Lookup(legacy, "eth0"); ok {
		t.Fatal("the legacy ID still holds an allocation")
	}
	if !n.kernel.has(id, "eth0") || n.kernel.rekeys != 1 {
		t.Fatalf("veth rekeyed: %v, rekeys %d (want the veth under %s, one rekey)", n.kernel.has(id, "eth0"), n.kernel.rekeys, id)
	}
	if h, ok := n.a.ipam.Lookup(halfID, "eth1"); !ok || h.Prefix.Addr() != mustAddr(t, halfAl.IP) {
		t.Fatalf("half-rekeyed attachment: %v %+v, want %s under %s", ok, h, halfAl.IP, halfID)
	}
	if _, ok := n.a.ipam.Lookup("/run/netns/gone", "eth0"); !ok {
		t.Fatal("a vanished legacy attachment was dropped by the rekey (the garbage collection's job)")
	}
	// The pass after start keeps the rekeyed ones and releases the vanished one.
	unlock = n.a.lockKernel()
	n.a.collectGarbage(ctx)
	unlock()
	if got := len(n.a.ipam.Allocations()); got != 2 {
		t.Fatalf("%d allocations after the garbage collection, want 2: %+v", got, n.a.ipam.Allocations())
	}
	if got := n.a.allocationIDFor(self); got != id {
		t.Fatalf("attach again finds %q, want %q", got, id)
	}
	out, err := n.a.handleDetach(jsonRequest(t, api.DetachRequest{Target: "/proc/thread-self/ns/net"}))
	if err != nil || len(out.([]api.Attachment)) != 1 {
		t.Fatalf("detach by another path of the namespace: %v %+v", err, out)
	}
	n.requireDetached(t, id, "eth0")
}

func mustAddr(t *testing.T, s string) netipAddr {
	t.Helper()
	return ipamPrefix(t, s).Addr()
}
