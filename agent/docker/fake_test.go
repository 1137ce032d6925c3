package docker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// fakeBackend is an in-memory Backend: a tiny allocator over Space.Range
// and a set of "plugged" ids.
type fakeBackend struct {
	space Space

	mu      sync.Mutex
	leases  map[string]Lease // id -> lease
	plugged map[string]bool
	full    bool // Allocate says the space is exhausted
	// allocDelay is how long Allocate takes (a flat-mode probe);
	// allocated lists what Allocate gave out, in order.
	allocDelay time.Duration
	allocated  []Lease
}

func (f *fakeBackend) Leases() []Lease {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Lease
	for _, l := range f.leases {
		if IsDockerID(l.ID) {
			out = append(out, l)
		}
	}
	return out
}

func (f *fakeBackend) Plugged(id string) bool { return f.isPlugged(id) }

// fakeEndpoints is dockerd's endpoint list; err makes it unreachable.
type fakeEndpoints struct {
	mu  sync.Mutex
	eps map[string]bool
	err error
}

func (e *fakeEndpoints) Endpoints(context.Context) (map[string]bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]bool{}
	for k, v := range e.eps {
		out[k] = v
	}
	return out, e.err
}

var _ Backend = (*fakeBackend)(nil)

func newFake(s Space) *fakeBackend {
	return &fakeBackend{space: s, leases: map[string]Lease{}, plugged: map[string]bool{}}
}

func (f *fakeBackend) Space() Space { return f.space }

func (f *fakeBackend) Allocate(_ context.Context, id string, want netip.Addr) (Lease, error) {
	f.mu.Lock()
	delay := f.allocDelay
	f.mu.Unlock()
	time.Sleep(delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.leases[id]; ok {
		return l, nil
	}
	taken := map[netip.Addr]Lease{}
	for _, l := range f.leases {
		taken[l.Addr] = l
	}
	if want.IsValid() {
		if h, ok := taken[want]; ok {
			return Lease{}, fmt.Errorf("address %s is already allocated to container %s", want, h.ID)
		}
	} else {
		if f.full {
			return Lease{}, fmt.Errorf("no free address in %s", f.space.Range)
		}
		for a := f.space.Range.Addr().Next(); f.space.Range.Contains(a); a = a.Next() {
			if _, ok := taken[a]; !ok && a != f.space.Gateway {
				want = a
				break
			}
		}
	}
	l := Lease{ID: id, Addr: want, Gateway: f.space.Gateway}
	f.leases[id] = l
	f.allocated = append(f.allocated, l)
	return l, nil
}

func (f *fakeBackend) Holder(a netip.Addr) (Lease, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.leases {
		if l.Addr == a {
			return l, true
		}
	}
	return Lease{}, false
}

func (f *fakeBackend) Lookup(id string) (Lease, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.leases[id]
	return l, ok
}

func (f *fakeBackend) Rebind(a netip.Addr, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for old, l := range f.leases {
		if l.Addr == a {
			delete(f.leases, old)
			l.ID = id
			f.leases[id] = l
			return nil
		}
	}
	return fmt.Errorf("%s is not held", a)
}

func (f *fakeBackend) SetName(id, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.leases[id]
	if !ok {
		return fmt.Errorf("%s holds nothing", id)
	}
	l.Name = name
	f.leases[id] = l
	return nil
}

func (f *fakeBackend) Release(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.leases, id)
	return nil
}

func (f *fakeBackend) Plug(_ context.Context, id string) (Plugged, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plugged[id] = true
	return Plugged{HostIf: "fmhost", PeerIf: "fppeer", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}, nil
}

func (f *fakeBackend) Unplug(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.plugged, id)
	return nil
}

func (f *fakeBackend) isPlugged(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.plugged[id]
}

// fakeNames answers EndpointName from a map.
type fakeNames struct{ names map[string]string }

func (n fakeNames) EndpointName(_ context.Context, _, ep string) (string, error) {
	return n.names[ep], nil
}
