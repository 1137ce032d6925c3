package kernel

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// mainTable is RT_TABLE_MAIN; a Route with Table 0 means the main table.
const mainTable = 254

// Addr is an address assigned to a link. Prefix holds the address with its
// prefix length, not masked (10.213.0.1/26).
type Addr struct {
	Dev    string
	Prefix netip.Prefix
}

// Route is a unicast route flatmesh owns (it is installed with RouteProtocol).
// Its identity in the kernel is (Table, Dst, Metric); the other fields can be
// changed in place with a replace.
type Route struct {
	Dst    netip.Prefix // destination, masked by Normalize
	Gw     netip.Addr   // next hop; zero for a directly connected (scope link) route
	Dev    string       // outgoing link
	Src    netip.Addr   // preferred source address; zero lets the kernel choose
	OnLink bool         // next hop is on Dev even if no address there covers it
	MTU    int          // route MTU metric; 0 = none
	Metric int          // priority
	Table  int          // routing table; 0 = main
}

// Neigh is a permanent neighbour entry (IP -> MAC) on a link.
type Neigh struct {
	Dev string
	IP  netip.Addr
	MAC MAC
}

// FDB is a permanent forwarding-database entry of a VXLAN link: frames for
// MAC are sent, encapsulated, to the underlay address Dst.
type FDB struct {
	Dev string
	MAC MAC
	Dst netip.Addr
}

// State is a set of kernel objects: the desired set computed by a data-plane
// mode, or the observed set read back by Observe. It is plain data; Diff
// compares two of them.
type State struct {
	Addrs  []Addr
	Neighs []Neigh
	FDB    []FDB
	Routes []Route
}

// Plan is what Diff found to do. ApplyPlan runs it in dependency order:
// Add and Replace of addresses, neighbours, FDB entries, routes; then Del of
// routes, neighbours, FDB entries, addresses.
type Plan struct {
	Add     State
	Replace State
	Del     State
}

// Len is the number of objects in s.
func (s State) Len() int { return len(s.Addrs) + len(s.Neighs) + len(s.FDB) + len(s.Routes) }

// Empty reports whether the plan has nothing to do.
func (p Plan) Empty() bool { return p.Add.Len()+p.Replace.Len()+p.Del.Len() == 0 }

// String summarises the plan for logs, e.g. "add 2 routes, del 1 neigh".
func (p Plan) String() string {
	var parts []string
	for _, op := range []struct {
		verb string
		s    State
	}{{"add", p.Add}, {"replace", p.Replace}, {"del", p.Del}} {
		for _, c := range []struct {
			n    int
			noun string
		}{{len(op.s.Addrs), "addr"}, {len(op.s.Neighs), "neigh"}, {len(op.s.FDB), "fdb"}, {len(op.s.Routes), "route"}} {
			if c.n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d %s", op.verb, c.n, c.noun))
			}
		}
	}
	if len(parts) == 0 {
		return "nothing to do"
	}
	return strings.Join(parts, ", ")
}

// String formats a route like `ip route` does.
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Dst.String())
	if r.Gw.IsValid() {
		b.WriteString(" via " + r.Gw.String())
	}
	b.WriteString(" dev " + r.Dev)
	if r.Src.IsValid() {
		b.WriteString(" src " + r.Src.String())
	}
	if r.OnLink {
		b.WriteString(" onlink")
	}
	if r.MTU > 0 {
		fmt.Fprintf(&b, " mtu %d", r.MTU)
	}
	if r.Metric > 0 {
		fmt.Fprintf(&b, " metric %d", r.Metric)
	}
	if r.Table != 0 && r.Table != mainTable {
		fmt.Fprintf(&b, " table %d", r.Table)
	}
	return b.String()
}

// Normalize returns a canonical copy of s: IPv4-mapped addresses unmapped,
// route destinations masked, table 0 spelled as main, OnLink dropped from
// routes without a gateway, and every list sorted. Diff normalizes both sides.
func (s State) Normalize() State {
	out := State{
		Addrs:  make([]Addr, 0, len(s.Addrs)),
		Neighs: make([]Neigh, 0, len(s.Neighs)),
		FDB:    make([]FDB, 0, len(s.FDB)),
		Routes: make([]Route, 0, len(s.Routes)),
	}
	for _, a := range s.Addrs {
		a.Prefix = netip.PrefixFrom(a.Prefix.Addr().Unmap(), unmappedBits(a.Prefix))
		out.Addrs = append(out.Addrs, a)
	}
	for _, n := range s.Neighs {
		n.IP = n.IP.Unmap()
		out.Neighs = append(out.Neighs, n)
	}
	for _, f := range s.FDB {
		f.Dst = f.Dst.Unmap()
		out.FDB = append(out.FDB, f)
	}
	for _, r := range s.Routes {
		out.Routes = append(out.Routes, r.normalize())
	}
	slices.SortFunc(out.Addrs, func(a, b Addr) int {
		return cmp.Or(cmp.Compare(a.Dev, b.Dev), comparePrefix(a.Prefix, b.Prefix))
	})
	slices.SortFunc(out.Neighs, func(a, b Neigh) int { return cmp.Or(cmp.Compare(a.Dev, b.Dev), a.IP.Compare(b.IP)) })
	slices.SortFunc(out.FDB, func(a, b FDB) int {
		return cmp.Or(cmp.Compare(a.Dev, b.Dev), slices.Compare(a.MAC[:], b.MAC[:]), a.Dst.Compare(b.Dst))
	})
	slices.SortFunc(out.Routes, func(a, b Route) int {
		return cmp.Or(cmp.Compare(a.Table, b.Table), comparePrefix(a.Dst, b.Dst), cmp.Compare(a.Metric, b.Metric),
			cmp.Compare(a.String(), b.String()))
	})
	return out
}

func (r Route) normalize() Route {
	r.Dst = netip.PrefixFrom(r.Dst.Addr().Unmap(), unmappedBits(r.Dst)).Masked()
	r.Gw = r.Gw.Unmap()
	r.Src = r.Src.Unmap()
	if r.Table == 0 {
		r.Table = mainTable
	}
	if !r.Gw.IsValid() {
		r.OnLink = false
	}
	return r
}

// unmappedBits converts the prefix length of an IPv4-mapped IPv6 prefix.
func unmappedBits(p netip.Prefix) int {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return p.Bits() - 96
	}
	return p.Bits()
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

type routeKey struct {
	Table  int
	Dst    netip.Prefix
	Metric int
}

type devIP struct {
	Dev string
	IP  netip.Addr
}

type devMAC struct {
	Dev string
	MAC MAC
}

// Diff compares the desired state with the observed one and returns the
// plan that turns have into want. Both sides are normalized first. Objects
// are matched by identity: addresses by (Dev, Prefix) (add/del only), routes
// by (Table, Dst, Metric), neighbours by (Dev, IP), FDB entries by (Dev, MAC);
// a matched object that differs is replaced. Diff(want, want) is empty.
func Diff(want, have State) Plan {
	w, h := want.Normalize(), have.Normalize()
	var p Plan
	p.Add.Addrs, _, p.Del.Addrs = diffKeyed(w.Addrs, h.Addrs, func(a Addr) Addr { return a })
	p.Add.Neighs, p.Replace.Neighs, p.Del.Neighs = diffKeyed(w.Neighs, h.Neighs, func(n Neigh) devIP { return devIP{n.Dev, n.IP} })
	p.Add.FDB, p.Replace.FDB, p.Del.FDB = diffKeyed(w.FDB, h.FDB, func(f FDB) devMAC { return devMAC{f.Dev, f.MAC} })
	p.Add.Routes, p.Replace.Routes, p.Del.Routes = diffKeyed(w.Routes, h.Routes,
		func(r Route) routeKey { return routeKey{r.Table, r.Dst, r.Metric} })
	return p
}

// diffKeyed matches want and have by key. A wanted object with no observed
// object of its key is added; one whose key is observed but not equal is
// replaced (the kernel replaces the first object of that key, the others of
// the key are deleted); observed objects of keys not wanted are deleted.
func diffKeyed[T comparable, K comparable](want, have []T, key func(T) K) (add, repl, del []T) {
	haveBy := make(map[K][]T, len(have))
	var order []K
	for _, h := range have {
		k := key(h)
		if _, ok := haveBy[k]; !ok {
			order = append(order, k)
		}
		haveBy[k] = append(haveBy[k], h)
	}
	seen := make(map[K]bool, len(want))
	for _, w := range want {
		k := key(w)
		if seen[k] {
			continue // Validate reports duplicates; Diff keeps the first.
		}
		seen[k] = true
		hs := haveBy[k]
		switch {
		case len(hs) == 0:
			add = append(add, w)
		case slices.Contains(hs, w):
			for _, h := range hs {
				if h != w {
					del = append(del, h)
				}
			}
		default:
			repl = append(repl, w)
			del = append(del, hs[1:]...)
		}
	}
	for _, k := range order {
		if !seen[k] {
			del = append(del, haveBy[k]...)
		}
	}
	return add, repl, del
}

// Validate checks that every object is well formed and that no two objects
// share an identity (see Diff).
func (s State) Validate() error {
	var errs []error
	n := s.Normalize()
	addrs := map[Addr]bool{}
	for _, a := range n.Addrs {
		if a.Dev == "" || !a.Prefix.IsValid() {
			errs = append(errs, fmt.Errorf("address %s on %q: needs a device and a valid prefix", a.Prefix, a.Dev))
		}
		if addrs[a] {
			errs = append(errs, fmt.Errorf("address %s on %s listed twice", a.Prefix, a.Dev))
		}
		addrs[a] = true
	}
	neighs := map[devIP]bool{}
	for _, x := range n.Neighs {
		if x.Dev == "" || !x.IP.IsValid() || x.MAC.IsZero() {
			errs = append(errs, fmt.Errorf("neighbour %s on %q: needs a device, an address and a non-zero mac", x.IP, x.Dev))
		}
		if neighs[devIP{x.Dev, x.IP}] {
			errs = append(errs, fmt.Errorf("neighbour %s on %s listed twice", x.IP, x.Dev))
		}
		neighs[devIP{x.Dev, x.IP}] = true
	}
	fdbs := map[devMAC]bool{}
	for _, f := range n.FDB {
		if f.Dev == "" || !f.Dst.IsValid() {
			errs = append(errs, fmt.Errorf("fdb entry %s on %q: needs a device and a destination", f.MAC, f.Dev))
		}
		if fdbs[devMAC{f.Dev, f.MAC}] {
			errs = append(errs, fmt.Errorf("fdb entry %s on %s listed twice", f.MAC, f.Dev))
		}
		fdbs[devMAC{f.Dev, f.MAC}] = true
	}
	routes := map[routeKey]bool{}
	for _, r := range n.Routes {
		if err := r.validate(); err != nil {
			errs = append(errs, err)
		}
		k := routeKey{r.Table, r.Dst, r.Metric}
		if routes[k] {
			errs = append(errs, fmt.Errorf("route %s listed twice", r))
		}
		routes[k] = true
	}
	return errors.Join(errs...)
}

func (r Route) validate() error {
	switch {
	case r.Dev == "":
		return fmt.Errorf("route %s: needs a device", r)
	case !r.Dst.IsValid():
		return fmt.Errorf("route %s: invalid destination", r)
	case r.Gw.IsValid() && r.Gw.Is4() != r.Dst.Addr().Is4():
		return fmt.Errorf("route %s: gateway family differs from destination", r)
	case r.Src.IsValid() && r.Src.Is4() != r.Dst.Addr().Is4():
		return fmt.Errorf("route %s: source family differs from destination", r)
	case r.MTU < 0 || r.Metric < 0 || r.Table < 0:
		return fmt.Errorf("route %s: negative mtu, metric or table", r)
	}
	return nil
}

// Scope says which kernel objects belong to flatmesh, so Observe reads only
// those and Diff never deletes anything else.
type Scope struct {
	AddrLinks  []string // every address on these links (but IPv6 link-local) is ours
	NeighLinks []string // every permanent neighbour on these links is ours
	FDBLinks   []string // every FDB entry with a remote destination on these links is ours
	RouteLinks []string // routes with RouteProtocol through these links are ours (any table)
}

// Check reports objects of want that lie outside the scope: they would be
// re-added on every pass because Observe never reads them back.
func (sc Scope) Check(want State) error {
	var errs []error
	for _, a := range want.Addrs {
		if !slices.Contains(sc.AddrLinks, a.Dev) {
			errs = append(errs, fmt.Errorf("address %s: link %q is not in the owned scope", a.Prefix, a.Dev))
		}
	}
	for _, n := range want.Neighs {
		if !slices.Contains(sc.NeighLinks, n.Dev) {
			errs = append(errs, fmt.Errorf("neighbour %s: link %q is not in the owned scope", n.IP, n.Dev))
		}
	}
	for _, f := range want.FDB {
		if !slices.Contains(sc.FDBLinks, f.Dev) {
			errs = append(errs, fmt.Errorf("fdb entry %s: link %q is not in the owned scope", f.MAC, f.Dev))
		}
	}
	for _, r := range want.Routes {
		if !slices.Contains(sc.RouteLinks, r.Dev) {
			errs = append(errs, fmt.Errorf("route %s: link %q is not in the owned scope", r, r.Dev))
		}
	}
	return errors.Join(errs...)
}

// Links returns every link named by the scope, once, sorted.
func (sc Scope) Links() []string {
	var all []string
	for _, l := range [][]string{sc.AddrLinks, sc.NeighLinks, sc.FDBLinks, sc.RouteLinks} {
		all = append(all, l...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// Connected are the subnets that addrs connect this host to (a /32 or
// /128 connects no one): what direct routing reaches without a router.
func Connected(addrs []Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		if a.Prefix.Bits() < a.Prefix.Addr().BitLen() {
			out = append(out, netip.PrefixFrom(a.Prefix.Addr(), a.Prefix.Bits()))
		}
	}
	return out
}
