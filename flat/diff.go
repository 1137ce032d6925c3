package flat

import (
	"fmt"
	"slices"
)

// Diff lists, one line each, how have differs from want: the NIC's link
// state (name, index, kind, MAC, MTU, up, master), its addresses (with
// flags, label, broadcast, prefix-route metric), its routes (every table,
// with metrics), and the bridge (present or not, its link, STP, forward
// delay, ports, addresses and routes). Empty means identical.
//
// Two things that change on their own are normalised: remaining lifetimes
// (only "forever" versus "finite" is compared) and the tentative flag of an
// IPv6 address whose duplicate address detection is still running.
func Diff(want, have Snapshot) []string {
	var out []string
	out = append(out, diffLinkPtr("nic", want.NIC, have.NIC)...)
	out = append(out, diffAddrs("nic", want.Addrs, have.Addrs)...)
	out = append(out, diffRoutes("nic", want.Routes, have.Routes)...)
	switch {
	case want.Bridge == nil && have.Bridge != nil:
		out = append(out, fmt.Sprintf("bridge %s exists, want none", have.Bridge.Link.Name))
	case want.Bridge != nil && have.Bridge == nil:
		out = append(out, fmt.Sprintf("bridge %s is missing", want.Bridge.Link.Name))
	case want.Bridge != nil:
		w, h := want.Bridge, have.Bridge
		out = append(out, diffLink("bridge", w.Link, h.Link)...)
		if w.STP != h.STP || w.ForwardDelay != h.ForwardDelay {
			out = append(out, fmt.Sprintf("bridge: stp %v forward delay %d, want stp %v forward delay %d",
				h.STP, h.ForwardDelay, w.STP, w.ForwardDelay))
		}
		if !slices.Equal(sortedCopy(w.Ports), sortedCopy(h.Ports)) {
			out = append(out, fmt.Sprintf("bridge: ports %v, want %v", h.Ports, w.Ports))
		}
		out = append(out, diffAddrs("bridge", w.Addrs, h.Addrs)...)
		out = append(out, diffRoutes("bridge", w.Routes, h.Routes)...)
	}
	return out
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func diffLinkPtr(what string, want, have *Link) []string {
	switch {
	case want == nil && have == nil:
		return nil
	case want == nil:
		return []string{fmt.Sprintf("%s %s exists, want none", what, have.Name)}
	case have == nil:
		return []string{fmt.Sprintf("%s %s is missing", what, want.Name)}
	}
	return diffLink(what, *want, *have)
}

func diffLink(what string, want, have Link) []string {
	if want == have {
		return nil
	}
	return []string{fmt.Sprintf("%s: link %+v, want %+v", what, have, want)}
}

// normAddr drops what changes by itself (see Diff).
func normAddr(a Addr) Addr {
	a.Flags &^= addrFlagTentative
	if a.Valid != Forever {
		a.Valid = 0
	}
	if a.Preferred != Forever {
		a.Preferred = 0
	}
	return a
}

func diffAddrs(what string, want, have []Addr) []string {
	var out []string
	h := map[string]Addr{}
	for _, a := range have {
		h[a.key()] = normAddr(a)
	}
	w := map[string]bool{}
	for _, a := range want {
		w[a.key()] = true
		got, ok := h[a.key()]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: address %s is missing", what, a))
		case got != normAddr(a):
			out = append(out, fmt.Sprintf("%s: address %s (flags 0x%x scope %d), want %s (flags 0x%x scope %d)",
				what, got, got.Flags, got.Scope, a, normAddr(a).Flags, a.Scope))
		}
	}
	for _, a := range have {
		if !w[a.key()] {
			out = append(out, fmt.Sprintf("%s: extra address %s", what, a))
		}
	}
	return out
}

// diffRoutes compares two route lists as multisets.
func diffRoutes(what string, want, have []Route) []string {
	var out []string
	left := map[Route]int{}
	for _, r := range have {
		left[r]++
	}
	for _, r := range want {
		if left[r] > 0 {
			left[r]--
			continue
		}
		out = append(out, fmt.Sprintf("%s: route %s is missing", what, r))
	}
	for _, r := range have {
		if left[r] > 0 {
			left[r]--
			out = append(out, fmt.Sprintf("%s: extra route %s", what, r))
		}
	}
	return out
}
