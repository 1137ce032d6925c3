package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Reconcile makes the objects of scope in ns match want: it checks want
// against the scope, observes, diffs and applies. It returns the plan it
// carried out (also on error, as far as it got). Links must exist already
// (Ensure* first). Idempotent: a second call with the same want and nothing
// changed in between returns an empty plan. Callers serialise calls per
// namespace (the agent's single reconcile goroutine does).
func Reconcile(ns *NS, want State, scope Scope) (Plan, error) {
	if err := want.Validate(); err != nil {
		return Plan{}, fmt.Errorf("invalid desired state: %w", err)
	}
	if err := scope.Check(want); err != nil {
		return Plan{}, err
	}
	have, err := Observe(ns, scope)
	if err != nil {
		return Plan{}, err
	}
	plan := Diff(want, have)
	if plan.Empty() {
		return plan, nil
	}
	return plan, ApplyPlan(ns, plan)
}

// Observe reads the objects of scope from ns. Links of the scope that do not
// exist contribute nothing.
func Observe(ns *NS, scope Scope) (State, error) {
	links, err := linkIndexes(ns, scope.Links())
	if err != nil {
		return State{}, err
	}
	var st State
	for _, name := range scope.AddrLinks {
		if idx, ok := links.byName[name]; ok {
			if st.Addrs, err = observeAddrs(ns, st.Addrs, name, idx); err != nil {
				return State{}, err
			}
		}
	}
	for _, name := range scope.NeighLinks {
		if idx, ok := links.byName[name]; ok {
			if st.Neighs, err = observeNeighs(ns, st.Neighs, name, idx); err != nil {
				return State{}, err
			}
		}
	}
	for _, name := range scope.FDBLinks {
		if idx, ok := links.byName[name]; ok {
			if st.FDB, err = observeFDB(ns, st.FDB, name, idx); err != nil {
				return State{}, err
			}
		}
	}
	if st.Routes, err = observeRoutes(ns, scope.RouteLinks, links); err != nil {
		return State{}, err
	}
	return st.Normalize(), nil
}

type linkIndex struct {
	byName  map[string]int
	byIndex map[int]string
}

func linkIndexes(ns *NS, names []string) (linkIndex, error) {
	li := linkIndex{byName: map[string]int{}, byIndex: map[int]string{}}
	for _, name := range names {
		if _, done := li.byName[name]; done {
			continue
		}
		l, err := ns.H.LinkByName(name)
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return li, fmt.Errorf("looking up %s: %w", name, err)
		}
		li.byName[name] = l.Attrs().Index
		li.byIndex[l.Attrs().Index] = name
	}
	return li, nil
}

func observeAddrs(ns *NS, out []Addr, name string, idx int) ([]Addr, error) {
	addrs, err := ns.H.AddrList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: idx}}, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		ip := addrFromIP(a.IP)
		if !ip.IsValid() || ip.IsLinkLocalUnicast() && ip.Is6() {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, Addr{Dev: name, Prefix: netip.PrefixFrom(ip, ones)})
	}
	return out, nil
}

func observeNeighs(ns *NS, out []Neigh, name string, idx int) ([]Neigh, error) {
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		ns4, err := ns.H.NeighList(idx, fam)
		if err != nil {
			return nil, fmt.Errorf("listing neighbours of %s: %w", name, err)
		}
		for _, n := range ns4 {
			mac, merr := MACFrom(n.HardwareAddr)
			if n.State&netlink.NUD_PERMANENT == 0 || merr != nil || n.LinkIndex != idx {
				continue
			}
			out = append(out, Neigh{Dev: name, IP: addrFromIP(n.IP), MAC: mac})
		}
	}
	return out, nil
}

func observeFDB(ns *NS, out []FDB, name string, idx int) ([]FDB, error) {
	entries, err := ns.H.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("listing fdb of %s: %w", name, err)
	}
	for _, n := range entries {
		mac, merr := MACFrom(n.HardwareAddr)
		dst := addrFromIP(n.IP)
		if merr != nil || !dst.IsValid() || n.LinkIndex != idx {
			continue
		}
		out = append(out, FDB{Dev: name, MAC: mac, Dst: dst})
	}
	return out, nil
}

func observeRoutes(ns *NS, names []string, links linkIndex) ([]Route, error) {
	if len(names) == 0 {
		return nil, nil
	}
	filter := &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_UNSPEC}
	nrs, err := ns.H.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []Route
	for _, nr := range nrs {
		dev, ok := links.byIndex[nr.LinkIndex]
		if !ok || !want[dev] || len(nr.MultiPath) > 0 {
			continue
		}
		out = append(out, routeFromNetlink(nr, dev))
	}
	return out, nil
}

func routeFromNetlink(nr netlink.Route, dev string) Route {
	r := Route{
		Gw:     addrFromIP(nr.Gw),
		Dev:    dev,
		Src:    addrFromIP(nr.Src),
		OnLink: nr.Flags&int(netlink.FLAG_ONLINK) != 0,
		MTU:    nr.MTU,
		Metric: nr.Priority,
		Table:  nr.Table,
	}
	if nr.Dst != nil {
		ip := addrFromIP(nr.Dst.IP)
		ones, _ := nr.Dst.Mask.Size()
		r.Dst = netip.PrefixFrom(ip, ones)
	} else if nr.Family == unix.AF_INET6 {
		r.Dst = netip.MustParsePrefix("::/0")
	} else {
		r.Dst = netip.MustParsePrefix("0.0.0.0/0")
	}
	return r.normalize()
}

func toNetlinkRoute(r Route, idx int) *netlink.Route {
	r = r.normalize()
	nr := &netlink.Route{
		LinkIndex: idx,
		Dst:       prefixToIPNet(r.Dst),
		Protocol:  RouteProtocol,
		Table:     r.Table,
		Priority:  r.Metric,
		MTU:       r.MTU,
		Scope:     netlink.SCOPE_LINK,
		Family:    unix.AF_INET,
	}
	if r.Dst.Addr().Is6() {
		nr.Family = unix.AF_INET6
	}
	if r.Gw.IsValid() {
		nr.Gw = net.IP(r.Gw.AsSlice())
		nr.Scope = netlink.SCOPE_UNIVERSE
	}
	if r.Src.IsValid() {
		nr.Src = net.IP(r.Src.AsSlice())
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func toNetlinkNeigh(n Neigh, idx int) *netlink.Neigh {
	fam := unix.AF_INET
	if n.IP.Is6() {
		fam = unix.AF_INET6
	}
	return &netlink.Neigh{LinkIndex: idx, Family: fam, State: netlink.NUD_PERMANENT, Type: unix.RTN_UNICAST,
		IP: net.IP(n.IP.AsSlice()), HardwareAddr: n.MAC.HardwareAddr()}
}

func toNetlinkFDB(f FDB, idx int) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF,
		IP: net.IP(f.Dst.AsSlice()), HardwareAddr: f.MAC.HardwareAddr()}
}

// ApplyPlan carries out p in ns in dependency order: addresses, neighbours,
// FDB entries, routes are added or replaced first; then routes, neighbours,
// FDB entries and addresses are deleted. An add that finds the object
// already there and a delete that finds it gone count as done. It goes on
// after a failed step and returns every error joined.
func ApplyPlan(ns *NS, p Plan) error {
	var names []string
	for _, s := range []State{p.Add, p.Replace, p.Del} {
		for _, a := range s.Addrs {
			names = append(names, a.Dev)
		}
		for _, n := range s.Neighs {
			names = append(names, n.Dev)
		}
		for _, f := range s.FDB {
			names = append(names, f.Dev)
		}
		for _, r := range s.Routes {
			names = append(names, r.Dev)
		}
	}
	links, err := linkIndexes(ns, names)
	if err != nil {
		return err
	}
	a := applier{ns: ns, links: links}
	for _, x := range p.Add.Addrs {
		a.addAddr(x)
	}
	for _, x := range append(p.Add.Neighs, p.Replace.Neighs...) {
		a.setNeigh(x)
	}
	for _, x := range append(p.Add.FDB, p.Replace.FDB...) {
		a.setFDB(x)
	}
	for _, x := range p.Add.Routes {
		a.addRoute(x)
	}
	for _, x := range p.Replace.Routes {
		a.replaceRoute(x)
	}
	for _, x := range p.Del.Routes {
		a.delRoute(x)
	}
	for _, x := range p.Del.Neighs {
		a.delNeigh(x)
	}
	for _, x := range p.Del.FDB {
		a.delFDB(x)
	}
	for _, x := range p.Del.Addrs {
		a.delAddr(x)
	}
	return errors.Join(a.errs...)
}
