// Package doctor checks a flatmesh host and says what to fix: the underlay
// MTU against the data plane's, forwarding, br_netfilter and the FORWARD
// policy, members reachable on the gossip and data-plane ports (tried, not
// assumed), duplicate advertise addresses, NetworkManager or
// systemd-networkd managing a flat-mode NIC, clock skew between members, and
// the permissions of the state dir and the API socket, and what
// --direct-routing does here and whether it is safe.
//
// Shape: Gather (Linux) collects Facts from the host, the agent's API and
// probes sent to the members; Check (pure) turns Facts into Results, so
// every rule is unit-tested with hand-written Facts.
package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"
)

// Status is a check's verdict.
type Status string

// Verdicts. Only Fail makes the report not OK.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "FAIL"
	Skip Status = "skip"
)

// Result is one check's outcome. JSON names are a contract for scripts.
type Result struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Report is what `flatmesh doctor` prints.
type Report struct {
	OK     bool     `json:"ok"`
	Checks []Result `json:"checks"`
}

// Probe is the outcome of one attempt to reach a member's port.
type Probe struct {
	Tried  bool   // false: not attempted (no address, mode without the port)
	OK     bool   // TCP: connected; UDP: no ICMP "port unreachable" came back
	Detail string // the error, or "open or filtered" for a silent UDP port
}

// Peer is a member as the agent lists it, with the probes sent to it.
type Peer struct {
	Name     string
	Addr     netip.Addr // gossip address
	Port     int
	Underlay netip.Addr
	State    string // alive, suspect, failed, left
	Self     bool

	GossipTCP Probe
	DataPlane Probe         // the VXLAN (or WireGuard) UDP port
	Skew      time.Duration // their clock minus ours, from an ICMP timestamp exchange
	SkewOK    bool          // Skew was measured
	SkewErr   string
	Direct    Probe // with --direct-routing, same subnet: ping from a container address
}

// PathInfo describes a file or directory the agent uses.
type PathInfo struct {
	Path   string
	Exists bool
	Mode   fs.FileMode
	UID    int
}

// NICManager says whether a network manager manages an interface.
type NICManager struct {
	Manager string // "NetworkManager" or "systemd-networkd"
	Iface   string
	Managed bool
	Detail  string
}

// Facts is everything the checks look at.
type Facts struct {
	ConfigErr string // the agent configuration did not load
	AgentErr  string // the agent did not answer on its socket

	Mode        string // vxlan, wireguard, flat
	Iface       string // underlay interface
	Bridge      string
	DataPort    int  // VXLAN port (WireGuard listen port)
	IPv6        bool // the underlay is IPv6
	UnderlayMTU int  // 0: unknown
	PlaneMTU    int  // the agent's container MTU; 0: unknown
	BridgeMTU   int  // 0: no bridge
	MTUOverride int  // mtu setting; 0: computed

	Forwarding    string // net.ipv4.ip_forward: "1", "0", "" unknown
	BrNetfilter   string // net.bridge.bridge-nf-call-iptables: "" when br_netfilter is not loaded
	ForwardPolicy string // iptables FORWARD policy; "" unknown
	ForwardJump   bool   // FORWARD jumps to flatmesh's chain
	IptablesErr   string

	Peers    []Peer
	Managers []NICManager

	// MemberSet is what the tunnel guard lets in (overlay modes): the
	// addresses in the firewall's member set, whether it exists, or why it
	// could not be read.
	MemberSet       []netip.Addr
	MemberSetExists bool
	MemberSetErr    string

	StateDir  PathInfo
	Socket    PathInfo
	SocketDir PathInfo

	Direct DirectFacts
}

// Check runs every rule over f.
func Check(f Facts) Report {
	var r Report
	for _, c := range checks {
		r.Checks = append(r.Checks, c(f))
	}
	r.OK = true
	for _, c := range r.Checks {
		if c.Status == Fail {
			r.OK = false
		}
	}
	return r
}

// WriteTable prints the report as aligned columns for people.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Check, c.Status, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", c.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.OK {
		_, err := fmt.Fprintln(w, "no problems found")
		return err
	}
	var bad []string
	for _, c := range r.Checks {
		if c.Status == Fail {
			bad = append(bad, c.Check)
		}
	}
	_, err := fmt.Fprintf(w, "problems: %s\n", strings.Join(bad, ", "))
	return err
}

// WriteJSON prints the report for machines.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
