package flat

import (
	"fmt"
	"slices"
	"strings"
)

// StepKind says what a Step does.
type StepKind int

// The steps a plan is made of. Adds tolerate "already exists" and deletes
// tolerate "not found", so a step can be replayed.
const (
	// StepCreateBridge creates Link as a bridge with MAC and MTU, STP off,
	// forward delay 0, and sets it up. An existing bridge with that MAC is
	// accepted.
	StepCreateBridge StepKind = iota + 1
	// StepAddrAdd adds Addr to Link.
	StepAddrAdd
	// StepAddrReplace rewrites Addr on Link (flags, lifetimes, metric).
	StepAddrReplace
	// StepAddrDel deletes Addr from Link.
	StepAddrDel
	// StepSetMaster makes Link a port of Master; "" releases it.
	StepSetMaster
	// StepRouteAdd appends Route (on Route.Dev), next to any route with the
	// same destination and metric.
	StepRouteAdd
	// StepRouteDel deletes Route (on Route.Dev).
	StepRouteDel
	// StepSetMTU sets Link's MTU.
	StepSetMTU
	// StepSetMAC sets Link's MAC.
	StepSetMAC
	// StepSetUp sets Link up (Up) or down.
	StepSetUp
	// StepDeleteLink deletes Link.
	StepDeleteLink
)

// Step is one change to the kernel. Which fields matter depends on Kind.
type Step struct {
	Kind   StepKind
	Link   string
	Addr   Addr
	Route  Route
	Master string
	MAC    string
	MTU    int
	Up     bool
}

// String describes the step for logs and errors.
func (s Step) String() string {
	switch s.Kind {
	case StepCreateBridge:
		return fmt.Sprintf("create bridge %s (mac %s, mtu %d, stp off, forward delay 0, up)", s.Link, s.MAC, s.MTU)
	case StepAddrAdd:
		return fmt.Sprintf("add address %s to %s", s.Addr, s.Link)
	case StepAddrReplace:
		return fmt.Sprintf("replace address %s on %s", s.Addr, s.Link)
	case StepAddrDel:
		return fmt.Sprintf("delete address %s from %s", s.Addr.Prefix, s.Link)
	case StepSetMaster:
		if s.Master == "" {
			return fmt.Sprintf("release %s from its master", s.Link)
		}
		return fmt.Sprintf("enslave %s to %s", s.Link, s.Master)
	case StepRouteAdd:
		return fmt.Sprintf("add route %s", s.Route)
	case StepRouteDel:
		return fmt.Sprintf("delete route %s", s.Route)
	case StepSetMTU:
		return fmt.Sprintf("set mtu of %s to %d", s.Link, s.MTU)
	case StepSetMAC:
		return fmt.Sprintf("set mac of %s to %s", s.Link, s.MAC)
	case StepSetUp:
		if s.Up {
			return fmt.Sprintf("set %s up", s.Link)
		}
		return fmt.Sprintf("set %s down", s.Link)
	case StepDeleteLink:
		return fmt.Sprintf("delete link %s", s.Link)
	}
	return fmt.Sprintf("step kind %d", s.Kind)
}

// Plan is an ordered list of steps.
type Plan struct {
	Steps []Step
}

// Empty reports whether the plan does nothing.
func (p Plan) Empty() bool { return len(p.Steps) == 0 }

// String lists the steps, one a line, numbered from 1.
func (p Plan) String() string {
	var b strings.Builder
	for i, s := range p.Steps {
		fmt.Fprintf(&b, "%d. %s\n", i+1, s)
	}
	return b.String()
}

// PlanSwitch computes the switch-over of the NIC in s into the bridge (see
// the package comment for the order and why). It runs Preflight first. A
// snapshot whose NIC is already a port of the bridge gives an empty plan.
func PlanSwitch(s Snapshot, o Options) (Plan, error) {
	o = o.withDefaults()
	if err := Preflight(s, o); err != nil {
		return Plan{}, err
	}
	if adoptable(s) {
		return Plan{}, nil
	}
	nic := *s.NIC
	br := o.Bridge
	steps := []Step{{Kind: StepCreateBridge, Link: br, MAC: nic.MAC, MTU: nic.MTU}}
	addrs := movableAddrs(s.Addrs)
	var fixups []Step
	for _, a := range addrs {
		a.Label = relabel(a.Label, nic.Name, br)
		add, fix := skipDAD(a)
		steps = append(steps, Step{Kind: StepAddrAdd, Link: br, Addr: add})
		if fix {
			fixups = append(fixups, Step{Kind: StepAddrReplace, Link: br, Addr: a})
		}
	}
	steps = append(steps, Step{Kind: StepSetMaster, Link: nic.Name, Master: br})
	routes := movableRoutes(s.Routes)
	for _, r := range onLinkFirst(routes) {
		r.Dev, r.Multipath = br, false
		steps = append(steps, Step{Kind: StepRouteAdd, Route: r})
	}
	for _, r := range gatewayFirst(routes) {
		steps = append(steps, Step{Kind: StepRouteDel, Route: r})
	}
	for _, a := range secondariesFirst(addrs) {
		steps = append(steps, Step{Kind: StepAddrDel, Link: nic.Name, Addr: a})
	}
	return Plan{Steps: append(steps, fixups...)}, nil
}

// skipDAD returns the address to add when an address moves between the
// NIC and the bridge: an IPv6 address gets IFA_F_NODAD, because it is the
// host's own address, already proven unique on this segment, and duplicate
// address detection would make it unusable for a second or more (tentative
// addresses neither receive nor answer). fix says that a replace with the
// original flags must follow (a replace does not start DAD).
func skipDAD(a Addr) (add Addr, fix bool) {
	if !a.Prefix.Addr().Is6() || a.Flags&addrFlagNoDAD != 0 {
		return a, false
	}
	a.Flags |= addrFlagNoDAD
	return a, true
}

// PlanRestore computes the steps that bring the host from the current
// snapshot back to the recorded one: NIC MTU, MAC and up state, its missing
// addresses and routes (added while it may still be a bridge port), its
// master, the removal of a bridge that was not there, then whatever the NIC
// has that the record does not. It works from any partial state a failed
// switch-over or restore leaves, and plans nothing when cur equals rec.
func PlanRestore(rec, cur Snapshot) Plan {
	var steps, fixups []Step
	if rec.NIC != nil && cur.NIC != nil {
		steps, fixups = restoreNICHead(rec, cur)
	}
	if rec.Bridge == nil && cur.Bridge != nil {
		steps = append(steps, Step{Kind: StepDeleteLink, Link: cur.Bridge.Link.Name})
	}
	if rec.NIC != nil && cur.NIC != nil {
		steps = append(steps, restoreNICTail(rec, cur)...)
	}
	return Plan{Steps: append(steps, fixups...)}
}

// restoreNICHead is the part of a restore that runs before the bridge goes;
// fixups restore the flags of IPv6 addresses added without DAD, last.
func restoreNICHead(rec, cur Snapshot) (steps, fixups []Step) {
	want, have := *rec.NIC, *cur.NIC
	name := have.Name
	if have.MTU != want.MTU {
		steps = append(steps, Step{Kind: StepSetMTU, Link: name, MTU: want.MTU})
	}
	if have.MAC != want.MAC {
		steps = append(steps, Step{Kind: StepSetMAC, Link: name, MAC: want.MAC})
	}
	if want.Up && !have.Up {
		steps = append(steps, Step{Kind: StepSetUp, Link: name, Up: true})
	}
	haveAddrs := map[string]Addr{}
	for _, a := range cur.Addrs {
		haveAddrs[a.key()] = a
	}
	for _, a := range rec.Addrs {
		h, ok := haveAddrs[a.key()]
		switch {
		case !ok:
			add, fix := skipDAD(a)
			steps = append(steps, Step{Kind: StepAddrAdd, Link: name, Addr: add})
			if fix {
				fixups = append(fixups, Step{Kind: StepAddrReplace, Link: name, Addr: a})
			}
		case settableAddr(h) != settableAddr(a):
			steps = append(steps, Step{Kind: StepAddrReplace, Link: name, Addr: a})
		}
	}
	missing := subtractRoutes(movableRoutes(rec.Routes), cur.Routes)
	for _, r := range onLinkFirst(missing) {
		r.Multipath = false
		steps = append(steps, Step{Kind: StepRouteAdd, Route: r})
	}
	if have.Master != want.Master {
		steps = append(steps, Step{Kind: StepSetMaster, Link: name, Master: want.Master})
	}
	return steps, fixups
}

// restoreNICTail removes what the NIC has beyond the record, last.
func restoreNICTail(rec, cur Snapshot) []Step {
	name := cur.NIC.Name
	var steps []Step
	extra := subtractRoutes(movableRoutes(cur.Routes), rec.Routes)
	for _, r := range gatewayFirst(extra) {
		steps = append(steps, Step{Kind: StepRouteDel, Route: r})
	}
	wantAddrs := map[string]bool{}
	for _, a := range rec.Addrs {
		wantAddrs[a.key()] = true
	}
	var extraAddrs []Addr
	for _, a := range cur.Addrs {
		if !wantAddrs[a.key()] {
			extraAddrs = append(extraAddrs, a)
		}
	}
	for _, a := range secondariesFirst(extraAddrs) {
		steps = append(steps, Step{Kind: StepAddrDel, Link: name, Addr: a})
	}
	if !rec.NIC.Up && cur.NIC.Up {
		steps = append(steps, Step{Kind: StepSetUp, Link: name, Up: false})
	}
	return steps
}

// settableAddr keeps what an address replace can change.
func settableAddr(a Addr) Addr {
	a = normAddr(a)
	a.Flags &= settableAddrFlags
	a.Scope = 0
	return a
}

// movableAddrs are the addresses a switch-over moves: all but IPv6
// link-local ones.
func movableAddrs(addrs []Addr) []Addr {
	var out []Addr
	for _, a := range addrs {
		if !a.linkLocal6() {
			out = append(out, a)
		}
	}
	return out
}

// movableRoutes are the routes a switch-over moves (see Route.movable).
func movableRoutes(routes []Route) []Route {
	var out []Route
	for _, r := range routes {
		if r.movable() {
			out = append(out, r)
		}
	}
	return out
}

// subtractRoutes returns the routes of a that b lacks (as multisets,
// ignoring the multipath mark).
func subtractRoutes(a, b []Route) []Route {
	have := map[Route]int{}
	for _, r := range b {
		have[r.key()]++
	}
	var out []Route
	for _, r := range a {
		if have[r.key()] > 0 {
			have[r.key()]--
			continue
		}
		out = append(out, r)
	}
	return out
}

// onLinkFirst orders routes so that routes without a gateway (which may
// make a gateway reachable) come before routes through a gateway.
func onLinkFirst(routes []Route) []Route {
	out := slices.Clone(routes)
	slices.SortStableFunc(out, func(a, b Route) int { return boolRank(a.Gw.IsValid()) - boolRank(b.Gw.IsValid()) })
	return out
}

// gatewayFirst is the reverse dependency order, for deletion.
func gatewayFirst(routes []Route) []Route {
	out := slices.Clone(routes)
	slices.SortStableFunc(out, func(a, b Route) int { return boolRank(b.Gw.IsValid()) - boolRank(a.Gw.IsValid()) })
	return out
}

// secondariesFirst orders addresses for deletion: deleting an IPv4 primary
// first would take its secondaries with it (promote_secondaries off).
func secondariesFirst(addrs []Addr) []Addr {
	out := slices.Clone(addrs)
	slices.SortStableFunc(out, func(a, b Addr) int { return boolRank(b.secondary()) - boolRank(a.secondary()) })
	return out
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}
