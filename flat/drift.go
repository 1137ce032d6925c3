package flat

import (
	"fmt"
	"net/netip"
	"slices"
)

// Drift is what a check of the bridge after the switch-over found.
//
// Ours are the objects flat mode made and keeps: the bridge's settings
// (STP off, forward delay 0, up, its MAC pinned to the NIC's), the NIC as
// a port of the bridge, and the container veths as its ports. Drift on
// them is repaired (Repaired says what was done).
//
// The host's are the addresses and default route the switch-over moved to
// the bridge: they belong to the host's configuration (its administrator,
// DHCP, NetworkManager), so drift there is reported (Host), never undone.
type Drift struct {
	Repaired []string
	Host     []string
}

// ownFixes are the repairs checkDrift asks for.
type ownFixes struct {
	bridge  bool     // bridge settings differ: kernel.EnsureBridge puts them back
	ports   []string // links that must be ports of the bridge (and up)
	reasons []string
}

// checkDrift compares the current snapshot (NIC and bridge) with the
// record of the switch-over. wantPorts are the host ends of our
// container veths. Pure.
func checkDrift(rec Record, cur Snapshot, bridge string, wantPorts []string) (ownFixes, []string) {
	var f ownFixes
	var host []string
	if cur.Bridge == nil {
		host = append(host, fmt.Sprintf("bridge %s is gone: run `flatmesh flat restore` and restart the agent", bridge))
		return f, host
	}
	br := cur.Bridge
	pinned := ""
	if rec.Original.NIC != nil {
		pinned = rec.Original.NIC.MAC
	}
	if br.STP || br.ForwardDelay != 0 {
		f.bridge = true
		f.reasons = append(f.reasons, fmt.Sprintf("bridge %s had stp %t and forward delay %d", bridge, br.STP, br.ForwardDelay))
	}
	if pinned != "" && br.Link.MAC != pinned {
		f.bridge = true
		f.reasons = append(f.reasons, fmt.Sprintf("bridge %s had mac %s instead of the NIC's %s", bridge, br.Link.MAC, pinned))
	}
	if !br.Link.Up {
		f.bridge = true
		f.reasons = append(f.reasons, fmt.Sprintf("bridge %s was down", bridge))
	}
	if cur.NIC == nil {
		host = append(host, fmt.Sprintf("NIC %s is gone from the host", rec.Iface))
	} else if cur.NIC.MasterIndex != br.Link.Index || !cur.NIC.Up {
		f.ports = append(f.ports, cur.NIC.Name)
		f.reasons = append(f.reasons, fmt.Sprintf("NIC %s was off bridge %s or down", cur.NIC.Name, bridge))
	}
	for _, p := range wantPorts {
		if !slices.Contains(br.Ports, p) {
			f.ports = append(f.ports, p)
			f.reasons = append(f.reasons, fmt.Sprintf("container port %s was off bridge %s", p, bridge))
		}
	}
	return f, append(host, hostDrift(rec, br, bridge)...)
}

// hostDrift lists the host's moved addresses and default gateway that are
// no longer on the bridge.
func hostDrift(rec Record, br *Bridge, bridge string) []string {
	var out []string
	have := map[netip.Prefix]bool{}
	for _, a := range br.Addrs {
		have[a.Prefix] = true
	}
	for _, a := range rec.Original.Addrs {
		if a.linkLocal6() || have[a.Prefix] {
			continue
		}
		out = append(out, fmt.Sprintf("address %s (on %s before the switch-over) is no longer on bridge %s", a.Prefix, rec.Iface, bridge))
	}
	if gw, ok := Gateway(rec.Original); ok {
		now, okNow := Gateway(Snapshot{NIC: &Link{MasterIndex: br.Link.Index}, Bridge: br})
		if !okNow || now != gw {
			out = append(out, fmt.Sprintf("the default route via %s is no longer on bridge %s", gw, bridge))
		}
	}
	return out
}
