package kernel

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// applier runs the single steps of a plan and collects their errors.
type applier struct {
	ns       *NS
	links    linkIndex
	errs     []error
	promoted map[string]bool // links with promote_secondaries turned on
}

func (a *applier) index(what, dev string) (int, bool) {
	idx, ok := a.links.byName[dev]
	if !ok {
		a.errs = append(a.errs, fmt.Errorf("%s: link %s not found in %s", what, dev, a.ns))
	}
	return idx, ok
}

func (a *applier) fail(err error, format string, args ...any) {
	if err != nil {
		a.errs = append(a.errs, fmt.Errorf(format+": %w", append(args, err)...))
	}
}

func (a *applier) addAddr(x Addr) {
	idx, ok := a.index("address "+x.Prefix.String(), x.Dev)
	if !ok {
		return
	}
	na := &netlink.Addr{IPNet: prefixToIPNet(x.Prefix)}
	if x.Prefix.Addr().Is6() {
		na.Flags = unix.IFA_F_NODAD // usable at once; flatmesh owns the block
	}
	err := a.ns.H.AddrAdd(linkRef(idx), na)
	if errors.Is(err, unix.EEXIST) {
		err = nil
	}
	a.fail(err, "adding address %s to %s", x.Prefix, x.Dev)
}

func (a *applier) delAddr(x Addr) {
	idx, ok := a.links.byName[x.Dev]
	if !ok {
		return // the link is gone and took the address along
	}
	if x.Prefix.Addr().Is4() && !a.promoted[x.Dev] {
		// Deleting a primary IPv4 address also deletes the secondaries of
		// its subnet (the address just added to replace it) unless the
		// link promotes them.
		a.fail(a.ns.SetSysctl("net/ipv4/conf/"+x.Dev+"/promote_secondaries", "1"), "keeping addresses of %s", x.Dev)
		if a.promoted == nil {
			a.promoted = map[string]bool{}
		}
		a.promoted[x.Dev] = true
	}
	err := a.ns.H.AddrDel(linkRef(idx), &netlink.Addr{IPNet: prefixToIPNet(x.Prefix)})
	if IsNotFound(err) {
		err = nil
	}
	a.fail(err, "deleting address %s from %s", x.Prefix, x.Dev)
}

func (a *applier) setNeigh(x Neigh) {
	if idx, ok := a.index("neighbour "+x.IP.String(), x.Dev); ok {
		a.fail(a.ns.H.NeighSet(toNetlinkNeigh(x, idx)), "setting neighbour %s lladdr %s on %s", x.IP, x.MAC, x.Dev)
	}
}

func (a *applier) delNeigh(x Neigh) {
	if idx, ok := a.links.byName[x.Dev]; ok {
		err := a.ns.H.NeighDel(toNetlinkNeigh(x, idx))
		if IsNotFound(err) {
			err = nil
		}
		a.fail(err, "deleting neighbour %s on %s", x.IP, x.Dev)
	}
}

func (a *applier) setFDB(x FDB) {
	if idx, ok := a.index("fdb entry "+x.MAC.String(), x.Dev); ok {
		a.fail(a.ns.H.NeighSet(toNetlinkFDB(x, idx)), "setting fdb entry %s dst %s on %s", x.MAC, x.Dst, x.Dev)
	}
}

func (a *applier) delFDB(x FDB) {
	if idx, ok := a.links.byName[x.Dev]; ok {
		err := a.ns.H.NeighDel(toNetlinkFDB(x, idx))
		if IsNotFound(err) {
			err = nil
		}
		a.fail(err, "deleting fdb entry %s dst %s on %s", x.MAC, x.Dst, x.Dev)
	}
}

// addRoute adds r. If a route with the same identity exists that Observe did
// not report (another protocol), it is taken over only when it already goes
// through one of the links we own; otherwise it belongs to someone else and
// the conflict is reported without touching it.
func (a *applier) addRoute(r Route) {
	idx, ok := a.index("route "+r.String(), r.Dev)
	if !ok {
		return
	}
	nr := toNetlinkRoute(r, idx)
	err := a.ns.H.RouteAdd(nr)
	if errors.Is(err, unix.EEXIST) {
		other, found := a.sameKeyRoute(r)
		if found && !a.owned(other.LinkIndex) {
			a.errs = append(a.errs, fmt.Errorf("route %s: the kernel already has %s (protocol %d) through a link flatmesh does not own; leaving it alone",
				r, other.Dst, other.Protocol))
			return
		}
		err = a.ns.H.RouteReplace(nr)
	}
	a.fail(err, "adding route %s", r)
}

func (a *applier) owned(idx int) bool {
	_, ok := a.links.byIndex[idx]
	return ok
}

// sameKeyRoute finds a route with r's table, destination and metric.
func (a *applier) sameKeyRoute(r Route) (netlink.Route, bool) {
	nr := toNetlinkRoute(r, 0)
	rs, err := a.ns.H.RouteListFiltered(nr.Family, &netlink.Route{Dst: nr.Dst, Table: nr.Table, Priority: r.Metric},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return netlink.Route{}, false
	}
	for _, x := range rs {
		if x.Priority == r.Metric {
			return x, true
		}
	}
	return netlink.Route{}, false
}

func (a *applier) replaceRoute(r Route) {
	if idx, ok := a.index("route "+r.String(), r.Dev); ok {
		a.fail(a.ns.H.RouteReplace(toNetlinkRoute(r, idx)), "replacing route %s", r)
	}
}

func (a *applier) delRoute(r Route) {
	idx, ok := a.links.byName[r.Dev]
	if !ok {
		return // the link is gone and took its routes along
	}
	err := a.ns.H.RouteDel(toNetlinkRoute(r, idx))
	if IsNotFound(err) {
		err = nil
	}
	a.fail(err, "deleting route %s", r)
}

// linkRef is a link value carrying only an index, for handle methods that
// take a netlink.Link.
func linkRef(idx int) netlink.Link {
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: idx}}
}
