package agent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/ipam"
)

var overlayCaps = Capabilities{Attach: true, GatewayPerBlock: true}

// The view of a pass is a snapshot of the real cluster and allocator, and
// a second pass with nothing changed sees the same view.
func TestPassSnapshot(t *testing.T) {
	h1 := newTestNode(t, "h1", 1, true, overlayCaps)
	h2 := newTestNode(t, "h2", 2, false, overlayCaps)
	if _, err := h2.a.cl.Join([]string{h1.addr()}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	al, err := h1.a.attachContainer(ctx, ipam.Request{ID: "/run/netns/c1", IfName: "eth0", Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "h1 to see h2 alive", func() bool { return len(h1.a.cl.AlivePeers()) == 2 })
	h1.a.pass(ctx)
	h1.a.pass(ctx)
	views := h1.plane.lastViews()
	if len(views) != 2 {
		t.Fatalf("%d passes reached the plane, want 2", len(views))
	}
	v := views[0]
	block := ipamPrefix(t, al.IP).Masked()
	if v.Self.Name != "h1" || len(v.Alive) != 1 || v.Alive[0].Name != "h2" {
		t.Fatalf("view self %q alive %v, want h1 with h2 alive", v.Self.Name, v.Alive)
	}
	if len(v.InUse) != 1 || v.InUse[0] != block {
		t.Fatalf("blocks in use %v, want [%s]", v.InUse, block)
	}
	if !contains(prefixStrings(v.Blocks["h1"]), block.String()) {
		t.Fatalf("h1's blocks %v do not hold %s", v.Blocks["h1"], block)
	}
	if !reflect.DeepEqual(views[0], views[1]) {
		t.Fatalf("a second pass with nothing changed saw another view:\n%+v\n%+v", views[0], views[1])
	}
	h1.checkLockRule(t)
}

// A failing pass is visible in status with its error and age, and the
// next good pass clears the error but keeps when it last succeeded.
func TestPassStatus(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	ctx := context.Background()
	var st api.Status
	n.a.passStatus(&st, time.Now())
	if st.LastPass != "" || st.LastPassError != "" {
		t.Fatalf("status before any pass: %+v", st)
	}
	n.a.pass(ctx)
	good := n.a.lastPass().applied
	n.plane.mu.Lock()
	n.plane.reconcileErr = errors.New("programming forwarding rules: iptables-restore failed")
	n.plane.mu.Unlock()
	n.a.pass(ctx)
	st = api.Status{}
	n.a.passStatus(&st, n.a.lastPass().at.Add(3*time.Second))
	if st.LastPassError != "programming forwarding rules: iptables-restore failed" || st.LastPassAge != "3s" ||
		st.LastApplied != good.UTC().Format(time.RFC3339) || st.LastPass == "" {
		t.Fatalf("status after a failed pass: %+v", st)
	}
	n.plane.mu.Lock()
	n.plane.reconcileErr = nil
	n.plane.mu.Unlock()
	n.a.pass(ctx)
	st = api.Status{}
	n.a.passStatus(&st, time.Now())
	if st.LastPassError != "" || st.LastApplied == "" {
		t.Fatalf("status after recovery: %+v", st)
	}
	n.checkLockRule(t)
}

// The attach flow: an address from our block, the plane's gateway, bridge
// and MTU in the spec, idempotent for the same container, and nothing left
// when the kernel step fails.
func TestAttachFlow(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	ctx := context.Background()
	req := ipam.Request{ID: "/run/netns/c1", IfName: "eth0", Name: "c1"}
	first, err := n.a.attachContainer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	spec := n.kernel.specs[0]
	if spec.Bridge != "fmtest0" || spec.MTU != 1400 || spec.GratuitousARP || !spec.Gateway.IsValid() ||
		spec.Address.String() != first.IP || spec.Gateway.String() != first.Gateway {
		t.Fatalf("attach spec %+v for answer %+v", spec, first)
	}
	again, err := n.a.attachContainer(ctx, req)
	if err != nil || again.IP != first.IP {
		t.Fatalf("second attach of the same container: %+v %v, want %s again", again, err, first.IP)
	}
	n.kernel.mu.Lock()
	n.kernel.attachErr = errFakeKernel
	n.kernel.mu.Unlock()
	if _, err := n.a.attachContainer(ctx, ipam.Request{ID: "/run/netns/c2", IfName: "eth0"}); !errors.Is(err, errFakeKernel) {
		t.Fatalf("attach with a failing kernel: %v", err)
	}
	if _, ok := n.a.ipam.Lookup("/run/netns/c2", "eth0"); ok {
		t.Fatal("a failed attach kept its address")
	}
	n.kernel.mu.Lock()
	n.kernel.attachErr = nil
	n.kernel.mu.Unlock()

	// Detach by name: the veth goes, the address is released.
	out, err := n.a.handleDetach(jsonRequest(t, api.DetachRequest{Target: "c1"}))
	if err != nil || len(out.([]api.Attachment)) != 1 {
		t.Fatalf("detach: %v %v", out, err)
	}
	n.requireDetached(t, "/run/netns/c1", "eth0")
	if _, ok := n.a.ipam.Lookup("/run/netns/c1", "eth0"); ok {
		t.Fatal("detach kept the address")
	}
	if _, err := n.a.handleDetach(jsonRequest(t, api.DetachRequest{Target: "c1"})); err == nil {
		t.Fatal("detaching an unknown container succeeded")
	}
	n.checkLockRule(t)
}

// A plane that probes the LAN: an address a foreign device answers for is
// kept aside for good and the next one is handed out; asking for it by
// name fails; a plane that cannot attach refuses.
func TestAttachProbesTheLAN(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, Capabilities{Attach: true, ProbesLAN: true, GratuitousARP: true})
	ctx := context.Background()
	n.plane.busyNext = 1 // a foreign device answers for the first address probed
	got, err := n.a.attachContainer(ctx, ipam.Request{ID: "/run/netns/c1", IfName: "eth0", Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(n.plane.probed) != 2 {
		t.Fatalf("probed %v, want two addresses", n.plane.probed)
	}
	taken := n.plane.probed[0]
	if ipamPrefix(t, got.IP).Addr() == taken || ipamPrefix(t, got.IP).Addr() != n.plane.probed[1] {
		t.Fatalf("handed out %s, which a foreign device answers for", taken)
	}
	if !n.kernel.specs[0].GratuitousARP {
		t.Fatal("a plane that asks for gratuitous ARP did not get it")
	}
	foreign := false
	for _, al := range n.a.ipam.Allocations() {
		foreign = foreign || (strings.HasPrefix(al.ID, foreignPrefix) && al.Prefix.Addr() == taken)
	}
	if !foreign {
		t.Fatalf("no foreign allocation keeps %s aside", taken)
	}
	other := ipamPrefix(t, got.IP).Addr().Next()
	n.plane.inUse[other] = true
	if _, err := n.a.attachContainer(ctx, ipam.Request{ID: "/run/netns/c2", IfName: "eth0", Want: other}); err == nil ||
		!strings.Contains(err.Error(), "already used by another device") {
		t.Fatalf("asking for an address in use on the LAN: %v", err)
	}
	n.plane.caps.Attach = false
	if _, err := n.a.handleAttach(jsonRequest(t, api.AttachRequest{Netns: "/run/netns/c3"})); err == nil {
		t.Fatal("a plane that cannot attach accepted an attach")
	}
	n.checkLockRule(t)
}

// Garbage collection releases the address of a container whose veth the
// kernel removed, keeps the others and the foreign ones, and leaves alone
// an attach in flight, whose probe does not hold up the pass.
func TestGarbageCollection(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, Capabilities{Attach: true, ProbesLAN: true})
	ctx := context.Background()
	for _, id := range []string{"/run/netns/c1", "/run/netns/c2"} {
		if _, err := n.a.attachContainer(ctx, ipam.Request{ID: id, IfName: "eth0"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.a.ipam.Allocate(ctx, ipam.Request{ID: foreignPrefix + "x", IfName: "lan"}); err != nil {
		t.Fatal(err)
	}
	// An attach stuck in its LAN probe: allocated, not yet in the kernel.
	gate, probing := make(chan struct{}), make(chan netipAddr, 1)
	n.plane.mu.Lock()
	n.plane.probeGate, n.plane.probing = gate, probing
	n.plane.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := n.a.attachContainer(ctx, ipam.Request{ID: "/run/netns/slow", IfName: "eth0"})
		done <- err
	}()
	<-probing
	n.kernel.vanish("/run/netns/c1", "eth0")
	passed := make(chan struct{})
	go func() { n.a.pass(ctx); close(passed) }()
	select {
	case <-passed:
	case <-time.After(5 * time.Second):
		t.Fatal("the pass waited for an attach's probe")
	}
	if _, ok := n.a.ipam.Lookup("/run/netns/c1", "eth0"); ok {
		t.Fatal("the vanished container kept its address")
	}
	for _, id := range []string{"/run/netns/c2", "/run/netns/slow", foreignPrefix + "x"} {
		ifn := "eth0"
		if strings.HasPrefix(id, foreignPrefix) {
			ifn = "lan"
		}
		if _, ok := n.a.ipam.Lookup(id, ifn); !ok {
			t.Fatalf("%s lost its address to the garbage collection", id)
		}
	}
	if _, err := n.a.handleDetach(jsonRequest(t, api.DetachRequest{Target: "/run/netns/slow"})); err == nil {
		t.Fatal("detach of an attach in flight was not refused")
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n.a.pass(ctx)
	if !n.kernel.has("/run/netns/slow", "eth0") {
		t.Fatal("the slow attach did not finish")
	}
	if _, ok := n.a.ipam.Lookup("/run/netns/slow", "eth0"); !ok {
		t.Fatal("the slow attach lost its address after it finished")
	}
	n.checkLockRule(t)
}

// Shutdown ends in-flight requests: an attach waiting in its probe returns
// the context's error as soon as the agent's life ends.
func TestShutdownCancelsRequests(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, Capabilities{Attach: true, ProbesLAN: true})
	gate, probing := make(chan struct{}), make(chan netipAddr, 1)
	defer close(gate)
	n.plane.mu.Lock()
	n.plane.probeGate, n.plane.probing = gate, probing
	n.plane.mu.Unlock()
	done := make(chan error, 1)
	h := n.a.withLife(func(r *http.Request) (any, error) {
		return n.a.attachContainer(r.Context(), ipam.Request{ID: "/run/netns/c1", IfName: "eth0"})
	})
	go func() {
		_, err := h(httptest.NewRequest("POST", "/v1/attach", nil))
		done <- err
	}()
	<-probing
	n.a.stopLife()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("attach ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not cancel the attach")
	}
	if _, ok := n.a.ipam.Lookup("/run/netns/c1", "eth0"); ok {
		t.Fatal("a cancelled attach kept its address")
	}
}

// Teardown and the API's flat restore take the kernel lock; restore is
// refused by a plane that cannot restore.
func TestTeardownAndRestoreTakeTheLock(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, Capabilities{Attach: true, Restore: true})
	if err := n.a.teardown(api.LeaveRequest{Purge: true, Restore: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.a.handleFlatRestore(httptest.NewRequest("POST", "/v1/flat/restore", nil)); err != nil {
		t.Fatal(err)
	}
	if n.plane.purged != 1 || n.plane.restored != 2 {
		t.Fatalf("purged %d restored %d, want 1 and 2", n.plane.purged, n.plane.restored)
	}
	n.plane.caps.Restore = false
	if _, err := n.a.handleFlatRestore(httptest.NewRequest("POST", "/v1/flat/restore", nil)); err == nil {
		t.Fatal("restore accepted by a plane that cannot restore")
	}
	n.checkLockRule(t)
}

// driftPlane is a fake plane that reports drift on state it does not own.
type driftPlane struct {
	*fakePlane
	drift []string
}

func (p driftPlane) Drift() []string { return p.drift }

// Status carries the last pass and the plane's drift report.
func TestStatusReportsPassAndDrift(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	n.a.plane = driftPlane{fakePlane: n.plane, drift: []string{"address 10.0.0.5/24 is no longer on bridge fmbr0"}}
	n.a.pass(context.Background())
	out, err := n.a.handleStatus(httptest.NewRequest("GET", "/v1/status", nil))
	if err != nil {
		t.Fatal(err)
	}
	st := out.(api.Status)
	if len(st.Drift) != 1 || !strings.Contains(st.Drift[0], "10.0.0.5/24") || st.LastPass == "" || st.LastPassError != "" {
		t.Fatalf("status %+v", st)
	}
}
