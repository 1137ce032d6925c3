package flat

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// bridgeableKinds are the link types flat mode enslaves: physical NICs
// ("device"), veth (labs), bonds and VLAN devices, all Ethernet.
var bridgeableKinds = map[string]bool{"device": true, "veth": true, "bond": true, "vlan": true}

// Preflight checks, without touching anything, that the switch-over
// described by o can be done safely on the host captured in s. It returns
// nil when the NIC is already a port of the configured bridge (adoption)
// and the range still fits.
//
// Refused: a NIC that does not exist, is not Ethernet, is wireless, is
// down, or is a port of another master; a bridge name that exists without
// being ours; an address with a finite lifetime (DHCP, SLAAC); an IPv4
// multipath route or an over-long address label; a range that is not
// inside the NIC's IPv4 subnet or that holds a host address, the gateway or
// the probe address (unless excluded); no IPv4 gateway and no probe
// address to verify the switch-over with.
func Preflight(s Snapshot, o Options) error {
	o = o.withDefaults()
	if err := checkIfName("interface", o.Iface); err != nil {
		return err
	}
	if err := checkIfName("bridge name", o.Bridge); err != nil {
		return err
	}
	if o.Bridge == o.Iface {
		return fmt.Errorf("bridge name %q is the NIC's own name: choose another bridge name", o.Bridge)
	}
	if err := checkRangeShape(o); err != nil {
		return err
	}
	if err := checkNIC(s, o); err != nil {
		return err
	}
	addrs, _ := hostConfig(s)
	if err := checkAddrs(s, o); err != nil {
		return err
	}
	if err := checkRoutes(s, o); err != nil {
		return err
	}
	gw, hasGW := Gateway(s)
	if !hasGW && !o.ProbeAddr.IsValid() {
		return fmt.Errorf("%s has no IPv4 default gateway to verify the switch-over with: set a probe address (a LAN machine that answers ARP)", o.Iface)
	}
	return checkRange(o, addrs, gw, hasGW)
}

// checkNIC checks the link itself and its relation to the bridge.
func checkNIC(s Snapshot, o Options) error {
	nic := s.NIC
	if nic == nil {
		return fmt.Errorf("interface %s not found", o.Iface)
	}
	if nic.Wireless {
		return fmt.Errorf("%s is a wireless interface: Wi-Fi access points drop frames from MAC addresses other than the associated station's, so containers behind a bridge would be unreachable; use an overlay mode (vxlan) on Wi-Fi", nic.Name)
	}
	if !bridgeableKinds[nic.Kind] {
		return fmt.Errorf("%s is a %s interface, not an Ethernet NIC (physical, bond, vlan or veth): flat mode cannot bridge it", nic.Name, nic.Kind)
	}
	if !nic.Up {
		return fmt.Errorf("%s is down: bring it up (and check the host is reachable through it) before switching to flat mode", nic.Name)
	}
	ours := adoptable(s)
	if nic.MasterIndex != 0 && !ours {
		return fmt.Errorf("%s is already a port of %s: release it (ip link set %s nomaster) or bridge that device instead", nic.Name, nic.Master, nic.Name)
	}
	if s.Bridge != nil {
		if s.Bridge.Link.Kind != "bridge" {
			return fmt.Errorf("%s already exists and is a %s, not a bridge: choose another bridge name", o.Bridge, s.Bridge.Link.Kind)
		}
		if !ours {
			return fmt.Errorf("bridge %s already exists without %s in it (not made by flatmesh?): choose another bridge name or delete it", o.Bridge, nic.Name)
		}
	}
	return nil
}

// checkAddrs refuses dynamic addresses and labels that would not fit.
func checkAddrs(s Snapshot, o Options) error {
	addrs, _ := hostConfig(s)
	dev := s.NIC.Name
	if adoptable(s) {
		dev = s.Bridge.Link.Name
	}
	for _, a := range addrs {
		if a.linkLocal6() {
			continue
		}
		if a.Dynamic() {
			return fmt.Errorf("address %s on %s is dynamic (valid_lft %ds, from DHCP or SLAAC): flatmesh cannot move a lease, the DHCP client would renew it on %s behind the bridge's back; make the address static in your network configuration (reserve it on the DHCP server first) and retry, or build the bridge yourself with your distribution's tools and run the DHCP client on the bridge",
				a.Prefix, dev, a.Valid, dev)
		}
		if l := relabel(a.Label, o.Iface, o.Bridge); len(l) > maxIfName {
			return fmt.Errorf("address %s on %s has label %q, which becomes %q on the bridge: longer than %d characters; shorten the label or the bridge name",
				a.Prefix, dev, a.Label, l, maxIfName)
		}
	}
	return nil
}

// checkRoutes refuses routes flat mode cannot move faithfully.
func checkRoutes(s Snapshot, _ Options) error {
	_, routes := hostConfig(s)
	for _, r := range routes {
		if r.Multipath && r.Dst.Addr().Is4() && r.movable() {
			return fmt.Errorf("route %s is an IPv4 multipath route through %s: flat mode cannot move one hop of it; replace it with single-path routes and retry", r, r.Dev)
		}
	}
	return nil
}

// checkRange checks the flat range against the host's addresses.
func checkRange(o Options, addrs []Addr, gw netip.Addr, hasGW bool) error {
	var subnets []string
	inside := false
	for _, a := range addrs {
		p := a.Prefix
		if !p.Addr().Is4() {
			continue
		}
		if sn := p.Masked().String(); !slices.Contains(subnets, sn) {
			subnets = append(subnets, sn)
		}
		if p.Bits() <= o.Range.Bits() && p.Contains(o.Range.Addr()) {
			inside = true
		}
	}
	if len(subnets) == 0 {
		return fmt.Errorf("%s has no IPv4 address: flat mode needs the host's LAN address (the flat range is a slice of its subnet)", o.Iface)
	}
	if !inside {
		return fmt.Errorf("flat range %s is outside %s's subnet (%s): choose a slice of the LAN the host is on", o.Range, o.Iface, strings.Join(subnets, ", "))
	}
	var errs []error
	for _, a := range addrs {
		if ip := a.Prefix.Addr(); o.Range.Contains(ip) && !excluded(ip, o.Exclude) {
			errs = append(errs, fmt.Errorf("flat range %s contains the host's own address %s: choose a range without it or add it to the exclusions", o.Range, ip))
		}
	}
	if hasGW && o.Range.Contains(gw) && !excluded(gw, o.Exclude) {
		errs = append(errs, fmt.Errorf("flat range %s contains the default gateway %s: choose a range without it or add it to the exclusions", o.Range, gw))
	}
	if p := o.ProbeAddr; p.IsValid() {
		if o.Range.Contains(p) && !excluded(p, o.Exclude) {
			errs = append(errs, fmt.Errorf("flat range %s contains the probe address %s: choose a range without it or add it to the exclusions", o.Range, p))
		}
		if !onLink(p, addrs) {
			errs = append(errs, fmt.Errorf("probe address %s is not on %s's subnet (%s): the check uses ARP, so it must be a machine on the LAN", p, o.Iface, strings.Join(subnets, ", ")))
		}
	}
	return errors.Join(errs...)
}

// onLink reports whether ip lies in the subnet of one of the addresses.
func onLink(ip netip.Addr, addrs []Addr) bool {
	for _, a := range addrs {
		if a.Prefix.Masked().Contains(ip) {
			return true
		}
	}
	return false
}

// relabel renames an IPv4 label from one device to another ("eth0:1" on
// eth0 becomes "fmbr0:1" on fmbr0); other labels are kept.
func relabel(label, from, to string) string {
	if label == from {
		return to
	}
	if rest, ok := strings.CutPrefix(label, from+":"); ok {
		return to + ":" + rest
	}
	return label
}
