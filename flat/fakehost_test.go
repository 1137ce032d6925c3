package flat

import (
	"fmt"
	"net/netip"
	"slices"
)

// fakeHost is an in-memory model of the kernel behaviour plans rely on:
// links with masters, addresses (IPv4 secondaries and their removal with
// their primary), routes (appended, deleted by exact match, and dropped
// when a link loses its last IPv4 address or is deleted). Kernel-derived
// routes are not modelled: snapshots here hold only movable routes.
type fakeHost struct {
	links map[string]*fakeLink
	next  int
}

type fakeLink struct {
	link   Link
	addrs  []Addr
	stp    bool
	fwd    uint32
	routes []Route
}

func newFakeHost(s Snapshot) *fakeHost {
	h := &fakeHost{links: map[string]*fakeLink{}, next: 100}
	h.links[s.NIC.Name] = &fakeLink{link: *s.NIC, addrs: slices.Clone(s.Addrs), routes: slices.Clone(s.Routes)}
	return h
}

func (h *fakeHost) snapshot(iface, bridge string) Snapshot {
	var s Snapshot
	if l, ok := h.links[iface]; ok {
		nic := l.link
		s.NIC, s.Addrs, s.Routes = &nic, slices.Clone(l.addrs), slices.Clone(l.routes)
	}
	if l, ok := h.links[bridge]; ok {
		b := &Bridge{Link: l.link, STP: l.stp, ForwardDelay: l.fwd, Addrs: slices.Clone(l.addrs), Routes: slices.Clone(l.routes)}
		for _, p := range h.links {
			if p.link.MasterIndex == l.link.Index {
				b.Ports = append(b.Ports, p.link.Name)
			}
		}
		s.Bridge = b
	}
	return s
}

func (h *fakeHost) get(name string) (*fakeLink, error) {
	l, ok := h.links[name]
	if !ok {
		return nil, fmt.Errorf("link %s not found", name)
	}
	return l, nil
}

func (h *fakeHost) apply(st Step) error {
	switch st.Kind {
	case StepCreateBridge:
		if l, ok := h.links[st.Link]; ok {
			if l.link.Kind != "bridge" {
				return fmt.Errorf("%s exists", st.Link)
			}
			return nil
		}
		h.next++
		h.links[st.Link] = &fakeLink{link: Link{Name: st.Link, Index: h.next, Kind: "bridge", MAC: st.MAC, MTU: st.MTU, Up: true}}
		return nil
	case StepDeleteLink:
		l, ok := h.links[st.Link]
		if !ok {
			return nil
		}
		for _, p := range h.links {
			if p.link.MasterIndex == l.link.Index {
				p.link.Master, p.link.MasterIndex = "", 0
			}
		}
		delete(h.links, st.Link)
		return nil
	case StepRouteAdd, StepRouteDel:
		return h.route(st)
	}
	l, err := h.get(st.Link)
	if err != nil {
		return err
	}
	switch st.Kind {
	case StepAddrAdd, StepAddrReplace:
		h.addrAdd(l, st.Addr)
	case StepAddrDel:
		h.addrDel(l, st.Addr)
	case StepSetMaster:
		if st.Master == "" {
			l.link.Master, l.link.MasterIndex = "", 0
			return nil
		}
		m, err := h.get(st.Master)
		if err != nil {
			return err
		}
		l.link.Master, l.link.MasterIndex = m.link.Name, m.link.Index
	case StepSetMTU:
		l.link.MTU = st.MTU
	case StepSetMAC:
		l.link.MAC = st.MAC
	case StepSetUp:
		l.link.Up = st.Up
	default:
		return fmt.Errorf("unknown step %d", st.Kind)
	}
	return nil
}

func (h *fakeHost) addrAdd(l *fakeLink, a Addr) {
	a.Flags &^= addrFlagSecondary
	for i, x := range l.addrs {
		if x.key() == a.key() {
			a.Flags |= x.Flags & addrFlagSecondary
			l.addrs[i] = a
			return
		}
	}
	for _, x := range l.addrs {
		if a.Prefix.Addr().Is4() && x.Prefix.Addr().Is4() && !x.secondary() &&
			x.Prefix.Bits() == a.Prefix.Bits() && x.Prefix.Masked() == a.Prefix.Masked() {
			a.Flags |= addrFlagSecondary
		}
	}
	l.addrs = append(l.addrs, a)
}

func (h *fakeHost) addrDel(l *fakeLink, a Addr) {
	var keep []Addr
	var gone *Addr
	for _, x := range l.addrs {
		if x.key() == a.key() {
			gone = &x
			continue
		}
		keep = append(keep, x)
	}
	if gone == nil {
		return
	}
	if gone.Prefix.Addr().Is4() && !gone.secondary() {
		// promote_secondaries off: the primary takes its secondaries along.
		keep = slices.DeleteFunc(keep, func(x Addr) bool {
			return x.secondary() && x.Prefix.Masked() == gone.Prefix.Masked()
		})
	}
	l.addrs = keep
	if !slices.ContainsFunc(keep, func(x Addr) bool { return x.Prefix.Addr().Is4() }) {
		// The last IPv4 address gone: IPv4 routes through the link go too.
		l.routes = slices.DeleteFunc(l.routes, func(r Route) bool { return r.Dst.Addr().Is4() })
	}
}

func (h *fakeHost) route(st Step) error {
	l, err := h.get(st.Route.Dev)
	if err != nil {
		return err
	}
	r := st.Route.key()
	i := slices.Index(l.routes, r)
	if st.Kind == StepRouteAdd {
		if i < 0 {
			l.routes = append(l.routes, r)
		}
		return nil
	}
	if i >= 0 {
		l.routes = slices.Delete(l.routes, i, i+1)
	}
	return nil
}

// applyPlan applies the first n steps of p (all when n < 0).
func (h *fakeHost) applyPlan(p Plan, n int) error {
	for i, st := range p.Steps {
		if n >= 0 && i >= n {
			break
		}
		if err := h.apply(st); err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, st, err)
		}
	}
	return nil
}

// testHost is a host with two IPv4 addresses (one secondary, one with a
// label), an IPv6 address, an IPv6 link-local address, and movable routes
// in two tables and both families.
func testHost() Snapshot {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	return Snapshot{
		NIC: &Link{Name: "eth0", Index: 2, Kind: "device", MAC: "52:54:00:12:34:56", MTU: 1500, Up: true},
		Addrs: []Addr{
			{Prefix: p("192.168.1.10/24"), Broadcast: a("192.168.1.255"), Label: "eth0", Flags: 0x80, Valid: Forever, Preferred: Forever, Metric: 100},
			{Prefix: p("192.168.1.11/24"), Broadcast: a("192.168.1.255"), Label: "eth0:1", Flags: 0x81, Valid: Forever, Preferred: Forever},
			{Prefix: p("2001:db8::10/64"), Flags: 0x80, Valid: Forever, Preferred: Forever},
			{Prefix: p("fe80::5054:ff:fe12:3456/64"), Flags: 0x80, Scope: 253, Valid: Forever, Preferred: Forever},
		},
		Routes: []Route{
			{Table: tableMain, Type: 1, Protocol: 4, Dst: p("0.0.0.0/0"), Gw: a("192.168.1.1"), Dev: "eth0", Metric: 100},
			{Table: 100, Type: 1, Protocol: 3, Dst: p("10.9.0.0/16"), Gw: a("192.168.1.254"), Dev: "eth0", Metric: 5, Metrics: RouteMetrics{MTU: 1400}},
			{Table: tableMain, Type: 1, Protocol: 4, Scope: 253, Dst: p("172.30.0.0/24"), Src: a("192.168.1.10"), Dev: "eth0"},
			{Table: tableMain, Type: 1, Protocol: 4, Dst: p("::/0"), Gw: a("2001:db8::1"), Dev: "eth0", Metric: 1024},
		},
	}
}

func testOptions() Options {
	return Options{
		Iface:   "eth0",
		Bridge:  "fmbr0",
		Range:   netip.MustParsePrefix("192.168.1.64/26"),
		Exclude: []netip.Prefix{netip.MustParsePrefix("192.168.1.96/28")},
	}
}
