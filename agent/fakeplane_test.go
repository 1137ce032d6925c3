package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/ipam"
)

// fakePlane is a dataPlane that records what the agent asks of it and
// checks that every kernel-writing call holds the agent's kernel lock. It
// touches no kernel, so the agent's flows run without root.
type fakePlane struct {
	a    *Agent // whose kernel lock must be held
	caps Capabilities

	mu           sync.Mutex
	views        []view
	reconcileErr error
	inUse        map[netip.Addr]bool // Probe answers "in use" for these
	busyNext     int                 // and for the next busyNext probed addresses
	probed       []netip.Addr        // every address probed, in order
	probeGate    chan struct{}       // when set, Probe waits for it (or ctx)
	probing      chan netip.Addr     // when set, Probe reports here first
	unlocked     []string            // kernel-writing calls made without the kernel lock
	purged       int
	restored     int
}

var _ dataPlane = (*fakePlane)(nil)

// checkLocked records a kernel-writing call made without the kernel lock.
func (p *fakePlane) checkLocked(what string) {
	if p.a.kernelMu.TryLock() {
		p.a.kernelMu.Unlock()
		p.mu.Lock()
		p.unlocked = append(p.unlocked, what)
		p.mu.Unlock()
	}
}

func (p *fakePlane) Capabilities() Capabilities { return p.caps }

func (p *fakePlane) Setup(context.Context) (cluster.Meta, error) {
	p.checkLocked("Setup")
	return cluster.Meta{}, nil
}

func (p *fakePlane) Reconcile(_ context.Context, v view) error {
	p.checkLocked("Reconcile")
	p.mu.Lock()
	defer p.mu.Unlock()
	p.views = append(p.views, v)
	return p.reconcileErr
}

func (p *fakePlane) Watch(ctx context.Context, _ func()) { <-ctx.Done() }
func (p *fakePlane) Bridge() string                      { return "fmtest0" }
func (p *fakePlane) MTU() int                            { return 1400 }

func (p *fakePlane) Address(al ipam.Allocation) netip.Prefix { return al.Prefix }

func (p *fakePlane) Gateway(al ipam.Allocation) netip.Addr { return al.Gateway }

// Probe must run without the kernel lock: it waits on the LAN.
func (p *fakePlane) Probe(ctx context.Context, addr netip.Addr) (bool, error) {
	if !p.a.kernelMu.TryLock() {
		p.mu.Lock()
		p.unlocked = append(p.unlocked, "Probe ran WITH the kernel lock")
		p.mu.Unlock()
	} else {
		p.a.kernelMu.Unlock()
	}
	p.mu.Lock()
	p.probed = append(p.probed, addr)
	if p.busyNext > 0 {
		p.busyNext--
		p.inUse[addr] = true
	}
	gate, probing, inUse := p.probeGate, p.probing, p.inUse[addr]
	p.mu.Unlock()
	if probing != nil {
		probing <- addr
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return inUse, nil
}

func (p *fakePlane) Purge(context.Context) error {
	p.checkLocked("Purge")
	p.mu.Lock()
	p.purged++
	p.mu.Unlock()
	return nil
}

func (p *fakePlane) Restore(context.Context) error {
	p.checkLocked("Restore")
	p.mu.Lock()
	p.restored++
	p.mu.Unlock()
	return nil
}

func (p *fakePlane) lastViews() []view {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]view(nil), p.views...)
}

func (p *fakePlane) violations() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.unlocked...)
}

// fakeKernel is a containerKernel over a map: the veths "in the kernel".
type fakeKernel struct {
	plane *fakePlane // for the lock check

	mu        sync.Mutex
	veths     map[string]attach.Attachment // by pendingKey
	specs     []attach.Spec
	attachErr error
	rekeys    int

	deleteGate chan struct{} // set before the first detach; see DetachMany

	// ends, when set, holds the container ends by namespace path and
	// interface name (owner: pendingKey), so that an attach into a
	// namespace whose interface name another pair still holds fails as
	// attach.Attach does.
	ends map[string]string
}

// dropEnds forgets the container ends of key; the caller holds k.mu.
func (k *fakeKernel) dropEnds(key string) {
	for e, owner := range k.ends {
		if owner == key {
			delete(k.ends, e)
		}
	}
}

var _ containerKernel = (*fakeKernel)(nil)

func (k *fakeKernel) Attach(_ context.Context, s attach.Spec) (attach.Result, error) {
	k.plane.checkLocked("Attach")
	k.mu.Lock()
	defer k.mu.Unlock()
	k.specs = append(k.specs, s)
	if k.attachErr != nil {
		return attach.Result{}, k.attachErr
	}
	if k.ends != nil {
		e, key := s.Netns+"\x00"+s.IfName, pendingKey(s.ContainerID, s.IfName)
		if owner, ok := k.ends[e]; ok && owner != key {
			return attach.Result{}, fmt.Errorf("interface %s already exists in %s: %w", s.IfName, s.Netns, attach.ErrIfNameTaken)
		}
		k.ends[e] = key
	}
	host := attach.HostIfName(s.ContainerID, s.IfName)
	k.veths[pendingKey(s.ContainerID, s.IfName)] = attach.Attachment{ContainerID: s.ContainerID, IfName: s.IfName,
		HostIf: host, MTU: s.MTU, Bridge: s.Bridge, Up: true}
	return attach.Result{ContainerID: s.ContainerID, Name: s.Name, HostIf: host, IfName: s.IfName,
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(len(k.veths))}, MTU: s.MTU, Netns: s.Netns, Address: s.Address, Gateway: s.Gateway}, nil
}

func (k *fakeKernel) List(_ context.Context, bridge string) ([]attach.Attachment, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []attach.Attachment
	for _, v := range k.veths {
		if bridge == "" || v.Bridge == bridge {
			out = append(out, v)
		}
	}
	return out, nil
}

// DetachMany deletes cut-off pairs; the detach worker calls it without the
// kernel lock (the being-deleted marks guard them). deleteGate, when set,
// holds every call until it is closed (to observe a pending delete).
func (k *fakeKernel) DetachMany(_ context.Context, specs []attach.DetachSpec) []error {
	if k.deleteGate != nil {
		<-k.deleteGate
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	errs := make([]error, len(specs))
	for _, s := range specs {
		delete(k.veths, pendingKey(s.ContainerID, s.IfName))
		k.dropEnds(pendingKey(s.ContainerID, s.IfName))
	}
	return errs
}

// CutOffMany sets the host ends down.
func (k *fakeKernel) CutOffMany(_ context.Context, specs []attach.DetachSpec) []error {
	k.plane.checkLocked("CutOffMany")
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, s := range specs {
		if v, ok := k.veths[pendingKey(s.ContainerID, s.IfName)]; ok {
			v.Up = false
			k.veths[pendingKey(s.ContainerID, s.IfName)] = v
		}
	}
	return make([]error, len(specs))
}

// Rekey moves the veth named after OldID to NewID, keeping its host name,
// as attach.Rekey does with an altname.
func (k *fakeKernel) Rekey(_ context.Context, s attach.RekeySpec) error {
	k.plane.checkLocked("Rekey")
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rekeys++
	for key, v := range k.veths {
		if v.HostIf == attach.HostIfName(s.OldID, s.IfName) && (v.ContainerID == s.OldID || v.ContainerID == s.NewID) {
			delete(k.veths, key)
			v.ContainerID = s.NewID
			k.veths[pendingKey(s.NewID, s.IfName)] = v
			return nil
		}
	}
	return attach.ErrNoAttachment
}

// vanish drops a container's veth, as the kernel does when its namespace goes.
func (k *fakeKernel) vanish(id, ifname string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.veths, pendingKey(id, ifname))
	k.dropEnds(pendingKey(id, ifname))
}

func (k *fakeKernel) has(id, ifname string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.veths[pendingKey(id, ifname)]
	return ok
}

// testNode is an agent with a fake plane and fake container kernel, a real
// allocator in a temporary state dir and a real memberlist on loopback.
type testNode struct {
	a      *Agent
	plane  *fakePlane
	kernel *fakeKernel
}

func newTestNode(t testing.TB, name string, n int, seed bool, caps Capabilities) *testNode {
	t.Helper()
	return newTestNodeWith(t, name, n, seed, caps, (*Agent).membersChanged)
}

// newTestNodeWith is newTestNode with the cluster's OnChange given (the
// scale benchmark compares (*Agent).poke, the trigger of old).
func newTestNodeWith(t testing.TB, name string, n int, seed bool, caps Capabilities, onChange func(*Agent)) *testNode {
	t.Helper()
	a, err := New(Options{Config: Config{Name: name, Cluster: "unit", Mode: "vxlan",
		CIDR: netip.MustParsePrefix("10.213.0.0/16"), BlockBits: 26}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.stopLife)
	plane := &fakePlane{a: a, caps: caps, inUse: map[netip.Addr]bool{}}
	k := &fakeKernel{plane: plane, veths: map[string]attach.Attachment{}}
	a.plane, a.ctrs = plane, k
	a.ipam, err = ipam.Open(ipam.Options{
		Self:      name,
		Config:    ipam.Config{CIDR: a.cfg.CIDR, BlockBits: 26, GatewayPerBlock: caps.GatewayPerBlock},
		StateDir:  t.TempDir(),
		Seed:      seed,
		Transport: &transport{a: a},
		OnChange:  a.afterIPAMChange,
		IsMember:  a.isMember,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(a.done) }) // stops the gossip worker
	a.cl, err = cluster.New(cluster.Config{
		Name: name, Bind: netip.MustParseAddrPort("127.0.0.1:0"),
		Meta:     cluster.Meta{Mode: "vxlan", Cluster: "unit", Underlay: netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", n))},
		Insecure: true, App: newGossip(a), OnChange: func() { onChange(a) }, Timing: cluster.TimingLocal,
	})
	if err != nil {
		t.Fatal(err)
	}
	a.clRef.Store(a.cl)
	t.Cleanup(func() { _ = a.cl.Shutdown() })
	return &testNode{a: a, plane: plane, kernel: k}
}

func (n *testNode) addr() string {
	self := n.a.cl.Self()
	return netip.AddrPortFrom(self.Addr, self.Port).String()
}

func (n *testNode) checkLockRule(t testing.TB) {
	t.Helper()
	if v := n.plane.violations(); len(v) > 0 {
		t.Fatalf("the kernel lock rule was broken: %v", v)
	}
}

var errFakeKernel = errors.New("fake kernel says no")
