package doctor

import (
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/flatmesh/flatmesh/agent/firewall"
)

// Thresholds of the clock check.
const (
	skewWarn = 500 * time.Millisecond
	skewFail = 2 * time.Second
)

// checks run in this order; each looks at Facts only.
var checks = []func(Facts) Result{
	checkAgent, checkMTU, checkForwarding, checkFirewall, checkTunnelGuard, checkMembers,
	checkDuplicates, checkNICManager, checkClock, checkStateDir, checkSocket,
	checkDirect,
}

func checkAgent(f Facts) Result {
	r := Result{Check: "agent"}
	switch {
	case f.ConfigErr != "":
		r.Status, r.Detail = Fail, "configuration: "+f.ConfigErr
		r.Fix = "correct /etc/flatmesh/flatmesh.hcl (flatmesh agent --help lists the settings)"
	case f.AgentErr != "":
		r.Status, r.Detail = Fail, "the agent does not answer: "+f.AgentErr
		r.Fix = "systemctl status flatmesh; journalctl -u flatmesh"
	default:
		r.Status, r.Detail = OK, fmt.Sprintf("answering, %s mode", f.Mode)
	}
	return r
}

// overhead is what the data plane's encapsulation takes from the underlay MTU.
func overhead(mode string, ipv6 bool) int {
	switch mode {
	case "vxlan":
		return 50
	case "wireguard":
		if ipv6 {
			return 80
		}
		return 60
	}
	return 0
}

func checkMTU(f Facts) Result {
	r := Result{Check: "mtu"}
	if f.UnderlayMTU == 0 || f.PlaneMTU == 0 {
		r.Status, r.Detail = Skip, "underlay or data-plane MTU unknown (no --iface, or the agent is down)"
		return r
	}
	ov := overhead(f.Mode, f.IPv6)
	fit := f.UnderlayMTU - ov
	switch {
	case f.PlaneMTU > fit:
		r.Status = Fail
		r.Detail = fmt.Sprintf("containers use MTU %d but %s (MTU %d) minus the %s overhead %d leaves %d: larger packets are dropped",
			f.PlaneMTU, f.Iface, f.UnderlayMTU, f.Mode, ov, fit)
		r.Fix = fmt.Sprintf("set mtu = %d (or 0 to compute it) and restart the agent, or raise the underlay MTU", fit)
	case f.BridgeMTU != 0 && f.BridgeMTU != f.PlaneMTU:
		r.Status = Warn
		r.Detail = fmt.Sprintf("bridge %s has MTU %d, containers %d", f.Bridge, f.BridgeMTU, f.PlaneMTU)
		r.Fix = "restart the agent: its next pass sets the bridge MTU"
	case f.PlaneMTU < fit && f.MTUOverride == 0:
		r.Status = Warn
		r.Detail = fmt.Sprintf("containers use MTU %d, the underlay allows %d: the underlay MTU changed since the agent started?", f.PlaneMTU, fit)
		r.Fix = "restart the agent to recompute the MTU"
	default:
		r.Status = OK
		r.Detail = fmt.Sprintf("%s MTU %d, %s overhead %d, containers %d", f.Iface, f.UnderlayMTU, f.Mode, ov, f.PlaneMTU)
	}
	return r
}

func checkForwarding(f Facts) Result {
	r := Result{Check: "forwarding"}
	switch f.Forwarding {
	case "1":
		r.Status, r.Detail = OK, "net.ipv4.ip_forward = 1"
	case "":
		r.Status, r.Detail = Skip, "net.ipv4.ip_forward unreadable"
	default:
		r.Status, r.Detail = Fail, "net.ipv4.ip_forward = "+f.Forwarding+": containers cannot reach other hosts"
		if f.Mode == "flat" {
			// Bridged LAN traffic does not need it; traffic leaving the LAN does.
			r.Status = Warn
			r.Detail = "net.ipv4.ip_forward = " + f.Forwarding + ": containers reach only their LAN segment"
		}
		r.Fix = "start the agent (it enables forwarding), or sysctl -w net.ipv4.ip_forward=1; check what turned it off (/etc/sysctl.d)"
	}
	return r
}

func checkFirewall(f Facts) Result {
	r := Result{Check: "firewall"}
	if f.ForwardPolicy == "" {
		r.Status, r.Detail = Skip, "iptables FORWARD unreadable: "+f.IptablesErr
		return r
	}
	brnf := "br_netfilter not loaded"
	if f.BrNetfilter != "" {
		brnf = "bridge-nf-call-iptables = " + f.BrNetfilter
	}
	bridged := f.BrNetfilter == "1"
	switch {
	case f.ForwardJump || f.ForwardPolicy == "ACCEPT":
		r.Status = OK
		r.Detail = fmt.Sprintf("FORWARD policy %s, flatmesh chain jumped to: %v, %s", f.ForwardPolicy, f.ForwardJump, brnf)
	case bridged || f.Mode != "flat":
		r.Status = Fail
		r.Detail = fmt.Sprintf("FORWARD policy %s and no jump to flatmesh's accept chain (%s): container traffic is dropped", f.ForwardPolicy, brnf)
		r.Fix = "start the agent (it installs FLATMESH-FORWARD at the top of FORWARD); if it runs, something removed the rule: check docker/firewalld reloads"
	default:
		r.Status = OK
		r.Detail = fmt.Sprintf("FORWARD policy %s, but %s: bridged frames skip iptables", f.ForwardPolicy, brnf)
	}
	return r
}

// checkTunnelGuard: in the overlays the tunnel port accepts only the
// addresses in the member set; a live member missing from it cannot reach
// this host's containers (its tunnel packets are dropped).
func checkTunnelGuard(f Facts) Result {
	r := Result{Check: "tunnel-guard"}
	switch {
	case f.Mode == "flat":
		r.Status, r.Detail = Skip, "flat mode: no tunnel port"
		return r
	case f.AgentErr != "" || f.ConfigErr != "":
		r.Status, r.Detail = Skip, "the agent does not answer"
		return r
	case f.MemberSetErr != "":
		r.Status, r.Detail = Warn, "member set unreadable: "+f.MemberSetErr
		r.Fix = "run flatmesh doctor as root; the kernel needs ip_set (modprobe ip_set_hash_ip xt_set)"
		return r
	case !f.MemberSetExists:
		r.Status, r.Detail = Fail, "ipset "+memberSetName(f)+" is missing: every member's tunnel packets are dropped"
		r.Fix = "the agent makes it within 30 s; if it stays missing: journalctl -u flatmesh (firewall errors)"
		return r
	}
	var missing, in []string
	for _, p := range f.Peers {
		if p.Self || p.State != "alive" || !p.Underlay.IsValid() {
			continue
		}
		if slices.Contains(f.MemberSet, p.Underlay.Unmap()) {
			in = append(in, p.Name)
		} else {
			missing = append(missing, fmt.Sprintf("%s (%s)", p.Name, p.Underlay))
		}
	}
	if len(missing) > 0 {
		r.Status = Fail
		r.Detail = fmt.Sprintf("ipset %s lacks %s: their tunnel packets are dropped", memberSetName(f), strings.Join(missing, ", "))
		r.Fix = "the agent adds a member at once and rechecks every 30 s; if it stays: journalctl -u flatmesh (firewall errors)"
		return r
	}
	r.Status = OK
	noun := "addresses"
	if len(f.MemberSet) == 1 {
		noun = "address"
	}
	r.Detail = fmt.Sprintf("ipset %s holds %d %s, every live member among them (%d)", memberSetName(f), len(f.MemberSet), noun, len(in))
	return r
}

// memberSetFamily is the family of the member set the tunnel guard uses
// here: the underlay's.
func memberSetFamily(f Facts) firewall.Family {
	if f.IPv6 {
		return firewall.IPv6
	}
	return firewall.IPv4
}

func memberSetName(f Facts) string { return firewall.MemberSetName(memberSetFamily(f)) }

func checkMembers(f Facts) Result {
	r := Result{Check: "members"}
	if f.AgentErr != "" || f.ConfigErr != "" {
		r.Status, r.Detail = Skip, "the agent does not answer"
		return r
	}
	var bad, down, fine []string
	for _, p := range f.Peers {
		if p.Self {
			continue
		}
		switch p.State {
		case "left":
			continue
		case "alive":
		default:
			down = append(down, p.Name+" "+p.State)
		}
		var why []string
		if p.GossipTCP.Tried && !p.GossipTCP.OK {
			why = append(why, fmt.Sprintf("gossip %s:%d/tcp: %s", p.Addr, p.Port, p.GossipTCP.Detail))
		}
		if p.DataPlane.Tried && !p.DataPlane.OK {
			why = append(why, fmt.Sprintf("%s %s:%d/udp: %s", f.Mode, p.Underlay, f.DataPort, p.DataPlane.Detail))
		}
		if len(why) > 0 {
			bad = append(bad, p.Name+" ("+strings.Join(why, "; ")+")")
		} else {
			fine = append(fine, p.Name)
		}
	}
	switch {
	case len(bad) > 0:
		r.Status, r.Detail = Fail, "unreachable: "+strings.Join(bad, ", ")
		r.Fix = fmt.Sprintf("open TCP+UDP %d (gossip) and UDP %d (%s) between the hosts' underlay addresses", portOf(f), f.DataPort, f.Mode)
	case len(down) > 0:
		r.Status, r.Detail = Warn, "not alive: "+strings.Join(down, ", ")
		r.Fix = "check those hosts' agents (systemctl status flatmesh); a host gone for good: flatmesh ipam rmpeer NAME"
	case len(fine) == 0:
		r.Status, r.Detail = Warn, "no other members: this host is alone in its cluster"
		r.Fix = "flatmesh join ADDR, or list a member in join = [...]"
	default:
		r.Status = OK
		ports := "gossip tcp"
		if f.DataPort != 0 {
			ports += fmt.Sprintf(" and %s udp %d", f.Mode, f.DataPort)
		}
		r.Detail = fmt.Sprintf("%d reachable on %s: %s", len(fine), ports, strings.Join(fine, ", "))
	}
	return r
}

func portOf(f Facts) int {
	for _, p := range f.Peers {
		if p.Self {
			return p.Port
		}
	}
	return 7496
}

func checkDuplicates(f Facts) Result {
	r := Result{Check: "advertise"}
	byAddr := map[netip.Addr][]string{}
	for _, p := range f.Peers {
		if p.State == "left" {
			continue
		}
		for _, a := range []netip.Addr{p.Addr, p.Underlay} {
			if a.IsValid() && !contains(byAddr[a], p.Name) {
				byAddr[a] = append(byAddr[a], p.Name)
			}
		}
	}
	var dups []string
	for a, names := range byAddr {
		if len(names) > 1 {
			sort.Strings(names)
			dups = append(dups, fmt.Sprintf("%s used by %s", a, strings.Join(names, " and ")))
		}
	}
	sort.Strings(dups)
	if len(dups) > 0 {
		r.Status, r.Detail = Fail, strings.Join(dups, "; ")
		r.Fix = "give each host its own advertise = \"IP\" (never a NAT address such as Vagrant's 10.0.2.15)"
		return r
	}
	if len(f.Peers) == 0 {
		r.Status, r.Detail = Skip, "no member list"
		return r
	}
	r.Status, r.Detail = OK, fmt.Sprintf("%d members, every address distinct", len(f.Peers))
	return r
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func checkNICManager(f Facts) Result {
	r := Result{Check: "nic-manager"}
	if f.Mode != "flat" {
		r.Status, r.Detail = Skip, "only flat mode hands a NIC to a bridge"
		return r
	}
	var managed, seen []string
	for _, m := range f.Managers {
		seen = append(seen, m.Manager)
		if m.Managed {
			managed = append(managed, fmt.Sprintf("%s manages %s (%s)", m.Manager, m.Iface, m.Detail))
		}
	}
	if len(managed) > 0 {
		r.Status, r.Detail = Fail, strings.Join(managed, "; ")+": it can take the addresses back from the bridge"
		r.Fix = fmt.Sprintf("NetworkManager: nmcli device set %s managed no (and %s); networkd: a .network file with Unmanaged=yes for both", f.Iface, f.Bridge)
		return r
	}
	r.Status = OK
	r.Detail = fmt.Sprintf("%s and %s are not managed by a network manager", f.Iface, f.Bridge)
	if len(seen) == 0 {
		r.Detail = "no NetworkManager or systemd-networkd running"
	}
	return r
}

func checkClock(f Facts) Result {
	r := Result{Check: "clock"}
	var worst time.Duration
	var worstName string
	var silent, measured []string
	for _, p := range f.Peers {
		if p.Self || p.State == "left" {
			continue
		}
		if !p.SkewOK {
			why := p.Name
			if p.SkewErr != "" {
				why += " (" + p.SkewErr + ")"
			}
			silent = append(silent, why)
			continue
		}
		measured = append(measured, p.Name)
		if abs(p.Skew) >= abs(worst) {
			worst, worstName = p.Skew, p.Name
		}
	}
	switch {
	case len(measured) == 0 && len(silent) == 0:
		r.Status, r.Detail = Skip, "no other members"
		return r
	case len(measured) == 0:
		r.Status, r.Detail = Warn, "skew unknown: "+strings.Join(silent, ", ")
		r.Fix = "allow ICMP timestamp requests between hosts, or compare `date` by hand"
		return r
	}
	r.Detail = fmt.Sprintf("largest skew %s (%s) over %d members", worst.Round(time.Millisecond), worstName, len(measured))
	if len(silent) > 0 {
		r.Detail += "; unknown for " + strings.Join(silent, ", ")
	}
	switch {
	case abs(worst) >= skewFail:
		r.Status = Fail
	case abs(worst) >= skewWarn:
		r.Status = Warn
	default:
		r.Status = OK
	}
	if r.Status != OK {
		r.Fix = "run NTP on every host (systemd-timesyncd or chrony); logs and leases compare times across hosts"
	}
	return r
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func checkStateDir(f Facts) Result {
	r := Result{Check: "state-dir"}
	d := f.StateDir
	switch {
	case d.Path == "":
		r.Status, r.Detail = Skip, "state dir unknown"
	case !d.Exists:
		r.Status, r.Detail = Warn, d.Path+" does not exist yet (the agent creates it)"
	case !d.Mode.IsDir():
		r.Status, r.Detail = Fail, d.Path+" is not a directory"
		r.Fix = "move it away; the agent creates the directory"
	case d.UID != 0 || d.Mode.Perm()&0o077 != 0:
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s is mode %04o owner uid %d: it holds the gossip keyring, only root may read it", d.Path, d.Mode.Perm(), d.UID)
		r.Fix = "chown root:root " + d.Path + " && chmod 0700 " + d.Path
	default:
		r.Status, r.Detail = OK, fmt.Sprintf("%s mode %04o, root", d.Path, d.Mode.Perm())
	}
	return r
}

func checkSocket(f Facts) Result {
	r := Result{Check: "socket"}
	s, dir := f.Socket, f.SocketDir
	switch {
	case s.Path == "":
		r.Status, r.Detail = Skip, "socket path unknown"
	case dir.Exists && dir.Mode.Perm()&0o022 != 0:
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s is mode %04o: others can replace the agent's socket", dir.Path, dir.Mode.Perm())
		r.Fix = "chmod 0755 " + dir.Path
	case !s.Exists:
		r.Status, r.Detail = Skip, s.Path+" does not exist (agent down)"
	case s.Mode.Type() != fs.ModeSocket:
		r.Status, r.Detail = Fail, s.Path+" is not a socket"
		r.Fix = "remove it and restart the agent"
	case s.UID != 0 || s.Mode.Perm()&0o077 != 0:
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s is mode %04o owner uid %d: others can drive the agent (attach, leave, purge)", s.Path, s.Mode.Perm(), s.UID)
		r.Fix = "restart the agent (it creates the socket 0600) and find what changed it"
	default:
		r.Status, r.Detail = OK, fmt.Sprintf("%s mode %04o, root", s.Path, s.Mode.Perm())
	}
	return r
}
