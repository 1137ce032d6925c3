package flat

import (
	"fmt"
	"net/netip"
	"strings"
)

// Kernel numbers the snapshot carries (from linux/rtnetlink.h and
// linux/if_addr.h), spelled out here so the pure code stays portable.
const (
	// Forever is the lifetime of a static address (INFINITY_LIFE_TIME).
	Forever uint32 = 0xffffffff

	addrFlagSecondary      = 0x01 // IFA_F_SECONDARY (state)
	addrFlagNoDAD          = 0x02 // IFA_F_NODAD
	addrFlagOptimistic     = 0x04 // IFA_F_OPTIMISTIC
	addrFlagHomeAddress    = 0x10 // IFA_F_HOMEADDRESS
	addrFlagTentative      = 0x40 // IFA_F_TENTATIVE (state: DAD running)
	addrFlagManageTempAddr = 0x100
	addrFlagNoPrefixRoute  = 0x200
	addrFlagMcAutoJoin     = 0x400

	// settableAddrFlags are the flags a caller may set on RTM_NEWADDR; the
	// others are state the kernel derives.
	settableAddrFlags = addrFlagNoDAD | addrFlagOptimistic | addrFlagHomeAddress |
		addrFlagManageTempAddr | addrFlagNoPrefixRoute | addrFlagMcAutoJoin

	protoKernel = 2 // RTPROT_KERNEL: derived from an address
	protoRA     = 9 // RTPROT_RA: learnt from a router advertisement

	tableMain = 254 // RT_TABLE_MAIN

	routeUnicast = 1 // RTN_UNICAST

	// defaultPrefixMetric is the metric the kernel gives an address's
	// prefix route when IFA_RT_PRIORITY is not set, per family.
	defaultPrefixMetric4 = 0
	defaultPrefixMetric6 = 256
)

// Snapshot is the configuration flat mode reads, changes and restores: the
// NIC with every address on it and every route through it, and the bridge.
// It is plain data (JSON-serialisable); Diff compares two of them.
type Snapshot struct {
	NIC    *Link   `json:"nic"` // nil when the NIC does not exist
	Addrs  []Addr  `json:"addrs,omitempty"`
	Routes []Route `json:"routes,omitempty"`
	// Bridge is the bridge named in the options, nil when it does not exist.
	Bridge *Bridge `json:"bridge,omitempty"`
}

// Link is one network interface.
type Link struct {
	Name        string `json:"name"`
	Index       int    `json:"index"`
	Kind        string `json:"kind"` // netlink type: "device" (physical), "veth", "bridge", ...
	MAC         string `json:"mac"`
	MTU         int    `json:"mtu"`
	Up          bool   `json:"up"`               // administratively up (IFF_UP)
	Master      string `json:"master,omitempty"` // name of the master device
	MasterIndex int    `json:"master_index,omitempty"`
	Wireless    bool   `json:"wireless,omitempty"`
}

// Bridge is the state of the flat bridge.
type Bridge struct {
	Link         Link     `json:"link"`
	STP          bool     `json:"stp"`
	ForwardDelay uint32   `json:"forward_delay"` // centiseconds
	Ports        []string `json:"ports,omitempty"`
	Addrs        []Addr   `json:"addrs,omitempty"`
	Routes       []Route  `json:"routes,omitempty"`
}

// Addr is one address on a link, with everything needed to re-create it.
type Addr struct {
	Prefix    netip.Prefix `json:"prefix"`             // local address and prefix length
	Peer      netip.Prefix `json:"peer,omitzero"`      // point-to-point peer, if any
	Broadcast netip.Addr   `json:"broadcast,omitzero"` // IPv4 broadcast, if any
	Label     string       `json:"label,omitempty"`    // IPv4 label (eth0, eth0:1)
	Flags     uint32       `json:"flags"`              // IFA_F_*
	Scope     uint8        `json:"scope"`              // RT_SCOPE_*
	Valid     uint32       `json:"valid_lft"`          // seconds left, Forever for static
	Preferred uint32       `json:"preferred_lft"`      // seconds left, Forever for static
	Metric    uint32       `json:"metric,omitempty"`   // prefix route metric (IFA_RT_PRIORITY); 0 = kernel default
}

// Route is one route (or one hop of a multipath route) through a link.
type Route struct {
	Table     int          `json:"table"`
	Type      int          `json:"type"`     // RTN_*
	Protocol  int          `json:"protocol"` // RTPROT_*
	Scope     int          `json:"scope"`    // RT_SCOPE_*
	Dst       netip.Prefix `json:"dst"`      // 0.0.0.0/0 or ::/0 for a default route
	Src       netip.Addr   `json:"src,omitzero"`
	Gw        netip.Addr   `json:"gw,omitzero"`
	Dev       string       `json:"dev"`
	Metric    int          `json:"metric"`
	TOS       int          `json:"tos,omitempty"`
	Realm     int          `json:"realm,omitempty"`
	OnLink    bool         `json:"onlink,omitempty"`
	Multipath bool         `json:"multipath,omitempty"` // a hop of a multipath route
	Metrics   RouteMetrics `json:"metrics,omitzero"`
}

// RouteMetrics are the RTA_METRICS of a route (0 = unset).
type RouteMetrics struct {
	MTU              int    `json:"mtu,omitempty"`
	MTULock          bool   `json:"mtu_lock,omitempty"`
	Window           int    `json:"window,omitempty"`
	RTT              int    `json:"rtt,omitempty"`
	RTTVar           int    `json:"rttvar,omitempty"`
	SSThresh         int    `json:"ssthresh,omitempty"`
	Cwnd             int    `json:"cwnd,omitempty"`
	AdvMSS           int    `json:"advmss,omitempty"`
	Reordering       int    `json:"reordering,omitempty"`
	Hoplimit         int    `json:"hoplimit,omitempty"`
	InitCwnd         int    `json:"initcwnd,omitempty"`
	Features         int    `json:"features,omitempty"`
	RTOMin           int    `json:"rto_min,omitempty"`
	RTOMinLock       bool   `json:"rto_min_lock,omitempty"`
	InitRwnd         int    `json:"initrwnd,omitempty"`
	QuickACK         int    `json:"quickack,omitempty"`
	Congctl          string `json:"congctl,omitempty"`
	FastOpenNoCookie int    `json:"fastopen_no_cookie,omitempty"`
}

// Dynamic reports whether the address has a finite valid lifetime (DHCP,
// SLAAC): something else renews it, so flat mode must not move it.
func (a Addr) Dynamic() bool { return a.Valid != Forever }

// secondary reports whether the kernel made a an IPv4 secondary address
// (another address on the link already covers its subnet).
func (a Addr) secondary() bool { return a.Flags&addrFlagSecondary != 0 }

// linkLocal6 reports whether a is an IPv6 link-local address (not moved).
func (a Addr) linkLocal6() bool { return a.Prefix.Addr().Is6() && a.Prefix.Addr().IsLinkLocalUnicast() }

// String renders the address as `ip addr` would, roughly.
func (a Addr) String() string {
	var b strings.Builder
	b.WriteString(a.Prefix.String())
	if a.Peer.IsValid() {
		fmt.Fprintf(&b, " peer %s", a.Peer)
	}
	if a.Broadcast.IsValid() {
		fmt.Fprintf(&b, " brd %s", a.Broadcast)
	}
	if a.Label != "" {
		fmt.Fprintf(&b, " label %s", a.Label)
	}
	if a.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", a.Metric)
	}
	if a.Flags&settableAddrFlags != 0 {
		fmt.Fprintf(&b, " flags 0x%x", a.Flags&settableAddrFlags)
	}
	if a.Dynamic() || a.Preferred != Forever {
		fmt.Fprintf(&b, " valid_lft %s preferred_lft %s", lft(a.Valid), lft(a.Preferred))
	}
	return b.String()
}

func lft(v uint32) string {
	if v == Forever {
		return "forever"
	}
	return fmt.Sprintf("%ds", v)
}

// key identifies an address on a link (what the kernel matches on).
func (a Addr) key() string { return a.Prefix.String() + "|" + a.Peer.String() }

// movable reports whether a route is moved to the bridge (and put back by
// a restore): the kernel derives proto kernel routes from addresses and
// relearns proto ra routes by itself.
func (r Route) movable() bool { return r.Protocol != protoKernel && r.Protocol != protoRA }

// String renders the route as `ip route` would, roughly.
func (r Route) String() string {
	var b strings.Builder
	if r.Type != routeUnicast {
		fmt.Fprintf(&b, "type %d ", r.Type)
	}
	if r.Dst.Bits() == 0 {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	if r.Gw.IsValid() {
		fmt.Fprintf(&b, " via %s", r.Gw)
	}
	fmt.Fprintf(&b, " dev %s", r.Dev)
	if r.Table != tableMain {
		fmt.Fprintf(&b, " table %d", r.Table)
	}
	fmt.Fprintf(&b, " proto %d scope %d", r.Protocol, r.Scope)
	if r.Src.IsValid() {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	fmt.Fprintf(&b, " metric %d", r.Metric)
	if r.OnLink {
		b.WriteString(" onlink")
	}
	if m := r.Metrics.String(); m != "" {
		b.WriteString(" " + m)
	}
	return b.String()
}

// String lists the set metrics as `ip route` would ("mtu lock 1400 advmss
// 1360"); empty when none is set.
func (m RouteMetrics) String() string {
	var parts []string
	add := func(name string, v int, lock bool) {
		if v == 0 {
			return
		}
		if lock {
			name += " lock"
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, v))
	}
	add("mtu", m.MTU, m.MTULock)
	add("window", m.Window, false)
	add("rtt", m.RTT, false)
	add("rttvar", m.RTTVar, false)
	add("ssthresh", m.SSThresh, false)
	add("cwnd", m.Cwnd, false)
	add("advmss", m.AdvMSS, false)
	add("reordering", m.Reordering, false)
	add("hoplimit", m.Hoplimit, false)
	add("initcwnd", m.InitCwnd, false)
	add("features", m.Features, false)
	add("rto_min", m.RTOMin, m.RTOMinLock)
	add("initrwnd", m.InitRwnd, false)
	add("quickack", m.QuickACK, false)
	add("fastopen_no_cookie", m.FastOpenNoCookie, false)
	if m.Congctl != "" {
		parts = append(parts, "congctl "+m.Congctl)
	}
	return strings.Join(parts, " ")
}

// key identifies a route for matching (everything but the multipath mark).
func (r Route) key() Route {
	r.Multipath = false
	return r
}

// adoptable reports whether the NIC is a port of the bridge.
func adoptable(s Snapshot) bool {
	return s.NIC != nil && s.Bridge != nil && s.NIC.MasterIndex == s.Bridge.Link.Index
}

// hostConfig is where the host's addresses and routes live in s: on the
// NIC, or on the bridge once the NIC is its port.
func hostConfig(s Snapshot) (addrs []Addr, routes []Route) {
	if adoptable(s) {
		return s.Bridge.Addrs, s.Bridge.Routes
	}
	return s.Addrs, s.Routes
}

// Gateway returns the IPv4 default gateway of the host configuration in s
// (main table, lowest metric), if there is one.
func Gateway(s Snapshot) (netip.Addr, bool) {
	_, routes := hostConfig(s)
	var best *Route
	for i, r := range routes {
		if r.Table != tableMain || r.Dst.Bits() != 0 || !r.Dst.Addr().Is4() || !r.Gw.IsValid() || r.Type != routeUnicast {
			continue
		}
		if best == nil || r.Metric < best.Metric {
			best = &routes[i]
		}
	}
	if best == nil {
		return netip.Addr{}, false
	}
	return best.Gw, true
}
