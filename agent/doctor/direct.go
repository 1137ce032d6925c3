package doctor

import (
	"cmp"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/flatmesh/flatmesh/overlay"
)

// DirectFacts is what the direct-routing check looks at.
type DirectFacts struct {
	On          bool // --direct-routing, as configured
	WGCleartext bool // --wg-direct-cleartext

	Connected []netip.Prefix // subnets of the underlay interface's addresses
	// Routed counts, by peer underlay address, the blocks this host routes
	// directly (the agent's routes via that address on the underlay).
	Routed map[netip.Addr]int
	// Source is the container-space source of those routes (this host's
	// first gateway): what the direct probes are sent from.
	Source netip.Addr

	RPFilterAll   string // net.ipv4.conf.all.rp_filter; "" unknown
	RPFilterIface string // net.ipv4.conf.<underlay>.rp_filter
	Cloud         string // the cloud this host runs on (DMI), "" none recognized
	CloudFix      string // how that cloud lets other source addresses through
	Err           string // the underlay's addresses could not be read
}

// rpFilter is the effective rp_filter of an interface: the kernel applies
// the larger of conf/all and conf/<dev> (0 off, 1 strict, 2 loose).
func rpFilter(all, dev string) string {
	if all == "" || dev == "" {
		return all + dev
	}
	return max(all, dev)
}

// clouds maps what DMI says (vendor, product, asset tag) to a cloud, and
// how that cloud lets a VM send and receive addresses it did not assign.
var clouds = []struct{ match, name, fix string }{
	{"amazon ec2", "Amazon EC2", "turn off each instance's source/destination check: aws ec2 modify-instance-attribute --no-source-dest-check"},
	{"google compute engine", "Google Compute Engine", "create the instances with --can-ip-forward and add VPC routes for each host's blocks"},
	{"7783-7084-3265-9085-8269-3286-77", "Microsoft Azure", "enable IP forwarding on each NIC and add route-table entries for each host's blocks"},
	{"openstack", "OpenStack", "add the cluster's CIDR to each port's allowed-address-pairs (or disable port security)"},
	{"alibaba cloud", "Alibaba Cloud", "add route entries for each host's blocks to the VPC route table"},
	{"oraclecloud", "Oracle Cloud", "set skip source/destination check on each VNIC"},
	{"digitalocean", "DigitalOcean", "its droplet network drops foreign source addresses: use the tunnel"},
	{"hetzner", "Hetzner Cloud", "use a private network with routes for each host's blocks"},
}

// CloudFromDMI names the cloud whose DMI strings (sys_vendor,
// product_name, bios_vendor, chassis_asset_tag...) are given, and how it
// lets other source addresses through; "" when none is recognized.
func CloudFromDMI(fields ...string) (name, fix string) {
	all := strings.ToLower(strings.Join(fields, "\x00"))
	for _, c := range clouds {
		if strings.Contains(all, c.match) {
			return c.name, c.fix
		}
	}
	return "", ""
}

// directPeers splits the other live members into those on a connected
// subnet of the underlay (direct with --direct-routing) and the others.
func directPeers(f Facts) (same, across []Peer) {
	plan := overlay.Direct{UnderlayDevice: f.Iface, DirectRouting: true, Connected: f.Direct.Connected}
	for _, p := range f.Peers {
		if p.Self || p.State == "left" || !p.Underlay.IsValid() {
			continue
		}
		if plan.Reaches(p.Underlay) {
			same = append(same, p)
		} else {
			across = append(across, p)
		}
	}
	return same, across
}

func peerList(ps []Peer, blocks map[netip.Addr]int) string {
	var out []string
	for _, p := range ps {
		s := fmt.Sprintf("%s %s", p.Name, p.Underlay)
		if blocks != nil {
			if n := blocks[p.Underlay]; n > 0 {
				s += fmt.Sprintf(" (%d direct route%s)", n, map[bool]string{true: "s"}[n != 1])
			} else {
				s += " (no direct route yet: it has no block, or runs without --direct-routing and keeps the tunnel)"
			}
		}
		out = append(out, s)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// safeWhere is when direct routing works, said in every verdict.
const safeWhere = "direct routing puts container addresses on the LAN: safe where the network between the hosts " +
	"delivers them (a switch, a bridge); a cloud network drops packets whose source address is not the VM's own " +
	"unless its source/destination checks are off, and a firewall between the hosts must pass container addresses, not only the tunnel port"

// directRisks are what on this host would drop direct-routed traffic.
func directRisks(f Facts) []string {
	var risks []string
	if f.Direct.Cloud != "" {
		risks = append(risks, fmt.Sprintf("this host runs on %s, whose network drops packets with a source address it did not assign unless told otherwise (%s)",
			f.Direct.Cloud, f.Direct.CloudFix))
	}
	if rpFilter(f.Direct.RPFilterAll, f.Direct.RPFilterIface) == "1" {
		risks = append(risks, fmt.Sprintf("rp_filter = 1 (strict) on %s: a container packet that arrives on %s from a peer this host routes through the tunnel "+
			"(one that sees this host on its subnet while this host does not, e.g. other prefix lengths; a block whose route is not here yet) is dropped; "+
			"sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.%s.rp_filter=2 (loose) on every host avoids it", f.Iface, f.Iface, f.Iface))
	}
	return risks
}

func checkDirect(f Facts) Result {
	r := Result{Check: "direct-routing"}
	d := f.Direct
	switch {
	case f.Mode != "vxlan" && f.Mode != "wireguard":
		r.Status, r.Detail = Skip, "only the vxlan and wireguard planes have a tunnel to skip"
		return r
	case f.Iface == "" || d.Err != "":
		r.Status, r.Detail = Skip, "the underlay's subnets are unknown: "+cmp.Or(d.Err, "no --iface")
		return r
	case d.On && f.Mode == "wireguard" && !d.WGCleartext:
		r.Status, r.Detail = Fail, "--direct-routing in wireguard mode without --wg-direct-cleartext: the agent refuses to start"
		r.Fix = "add --wg-direct-cleartext (same-subnet traffic then leaves unencrypted) or drop --direct-routing"
		return r
	}
	same, across := directPeers(f)
	risks := directRisks(f)
	subnets := fmt.Sprint(d.Connected)
	if !d.On {
		r.Status = OK
		r.Detail = fmt.Sprintf("off: every peer through the %s tunnel", f.Mode)
		if len(same) > 0 {
			r.Detail += fmt.Sprintf("; with --direct-routing %s would be routed directly via %s %s, %s would keep the tunnel",
				peerList(same, nil), f.Iface, subnets, peerList(across, nil))
		}
		r.Detail += "; " + safeWhere
		if len(risks) > 0 {
			r.Detail += "; here: " + strings.Join(risks, "; ")
		}
		return r
	}
	r.Detail = fmt.Sprintf("on: direct via %s %s: %s; through the %s tunnel: %s",
		f.Iface, subnets, peerList(same, d.Routed), f.Mode, peerList(across, nil))
	if f.Mode == "wireguard" {
		r.Detail += " (direct peers get cleartext: --wg-direct-cleartext)"
	}
	var bad, unknown []string
	for _, p := range same {
		switch {
		case p.Direct.Tried && !p.Direct.OK:
			bad = append(bad, fmt.Sprintf("%s (%s)", p.Name, p.Direct.Detail))
		case !p.Direct.Tried && p.Direct.Detail != "":
			unknown = append(unknown, fmt.Sprintf("%s (%s)", p.Name, p.Direct.Detail))
		}
	}
	if len(unknown) > 0 {
		r.Detail += "; " + strings.Join(unknown, ", ")
	}
	switch {
	case len(bad) > 0:
		r.Status = Fail
		r.Detail += fmt.Sprintf("; unreachable directly from container address %s: %s", d.Source, strings.Join(bad, ", "))
		r.Fix = "find what drops container addresses between the hosts: a cloud's source/destination check, rp_filter = 1 on either host, a firewall; or run every host without --direct-routing"
		if len(risks) > 0 {
			r.Fix += "; here: " + strings.Join(risks, "; ")
		}
	case len(risks) > 0:
		r.Status = Warn
		r.Detail += "; " + strings.Join(risks, "; ")
		r.Fix = safeWhere
	default:
		r.Status = OK
		if len(same) > len(unknown) {
			r.Detail += fmt.Sprintf("; every direct peer tested answers a ping from container address %s", d.Source)
		}
	}
	return r
}
