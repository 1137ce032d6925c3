package docker

import (
	"fmt"
	"net/netip"
	"strings"
)

// AddressSpace is the one address space this IPAM driver knows.
const AddressSpace = "flatmesh"

// gatewayType is the RequestAddress option value Docker uses when it asks
// for a network's gateway.
const gatewayType = "com.docker.network.gateway"

// AnyPool is the pool Docker records for a network made without --subnet:
// the one answer libnetwork's overlap test with the host's routes skips.
// The pool id still names the cluster's space (see RequestPool).
const AnyPool = "0.0.0.0/0"

// poolIDPrefix starts every pool id; the id carries the whole pool so an
// agent restarted between two calls needs no state to read it.
const poolIDPrefix = "flatmesh:"

// pool is a network's pool as Docker knows it.
type pool struct {
	Subnet netip.Prefix
	Range  netip.Prefix
}

func (p pool) id() string { return poolIDPrefix + p.Subnet.String() + ":" + p.Range.String() }

// fits is the sentence that tells the user what this cluster accepts.
func (s Space) fits() string {
	if s.Mode == "flat" {
		return fmt.Sprintf("this flat-mode cluster hands out %s (--flat-range) in the LAN subnet %s with the LAN router %s: "+
			"use --subnet %s --ip-range %s --gateway %s, or omit them", s.Range, s.Subnet, gwText(s.Gateway), s.Subnet, s.Range, gwText(s.Gateway))
	}
	return fmt.Sprintf("this %s-mode cluster hands out its space %s: use --subnet %s (and no --ip-range, or --ip-range %s), or omit them",
		s.Mode, s.Subnet, s.Subnet, s.Subnet)
}

func gwText(a netip.Addr) string {
	if !a.IsValid() {
		return "(none)"
	}
	return a.String()
}

// requestPool checks Docker's --subnet/--ip-range against the space.
func (s Space) requestPool(subnet, subPool string, v6 bool) (pool, error) {
	if v6 {
		return pool{}, fmt.Errorf("flatmesh: IPv6 is not supported yet; create the network without --ipv6")
	}
	p := pool{Subnet: s.Subnet, Range: s.Range}
	if subnet != "" && subnet != AnyPool {
		got, err := netip.ParsePrefix(subnet)
		if err != nil {
			return pool{}, fmt.Errorf("flatmesh: --subnet %q is not a CIDR; %s", subnet, s.fits())
		}
		if got.Masked() != s.Subnet {
			return pool{}, fmt.Errorf("flatmesh: --subnet %s does not fit; %s", subnet, s.fits())
		}
	}
	if subPool != "" {
		got, err := netip.ParsePrefix(subPool)
		if err != nil {
			return pool{}, fmt.Errorf("flatmesh: --ip-range %q is not a CIDR; %s", subPool, s.fits())
		}
		if got.Masked() != s.Range {
			return pool{}, fmt.Errorf("flatmesh: --ip-range %s does not fit; %s", subPool, s.fits())
		}
	}
	return p, nil
}

// parsePool reads a pool id made by pool.id and checks it is still this
// cluster's (a network made under another configuration is refused).
func (s Space) parsePool(id string) (pool, error) {
	rest, ok := strings.CutPrefix(id, poolIDPrefix)
	sub, rng, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return pool{}, fmt.Errorf("flatmesh: unknown pool %q: recreate the network with --ipam-driver flatmesh", id)
	}
	p := pool{}
	var err1, err2 error
	p.Subnet, err1 = netip.ParsePrefix(sub)
	p.Range, err2 = netip.ParsePrefix(rng)
	if err1 != nil || err2 != nil {
		return pool{}, fmt.Errorf("flatmesh: malformed pool %q: recreate the network with --ipam-driver flatmesh", id)
	}
	if p.Subnet != s.Subnet || p.Range != s.Range {
		return pool{}, fmt.Errorf("flatmesh: the network's pool %s (range %s) is no longer this cluster's; %s; recreate the network",
			p.Subnet, p.Range, s.fits())
	}
	return p, nil
}

// gateway answers Docker's request for the network's gateway.
func (s Space) gateway(asked string) (netip.Prefix, error) {
	if !s.Gateway.IsValid() {
		return netip.Prefix{}, fmt.Errorf("flatmesh: this host knows no gateway for %s (flat mode: the NIC had no default route); "+
			"give the agent's host a default route and restart the agent", s.Subnet)
	}
	if asked != "" {
		a, err := parseAddr(asked)
		if err != nil || a != s.Gateway {
			return netip.Prefix{}, fmt.Errorf("flatmesh: --gateway %s does not fit; %s", asked, s.fits())
		}
	}
	return netip.PrefixFrom(s.Gateway, s.Subnet.Bits()), nil
}

// wanted checks an address Docker asks for (--ip).
func (s Space) wanted(asked string) (netip.Addr, error) {
	a, err := parseAddr(asked)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("flatmesh: --ip %q is not an IPv4 address", asked)
	}
	if !s.Range.Contains(a) {
		return netip.Addr{}, fmt.Errorf("flatmesh: --ip %s is outside %s, the range this cluster hands out; pick an address in it or omit --ip", a, s.Range)
	}
	if a == s.Gateway {
		return netip.Addr{}, fmt.Errorf("flatmesh: --ip %s is the network's gateway; pick another address in %s", a, s.Range)
	}
	return a, nil
}

// parseAddr reads "A" or "A/LEN" (Docker sends both forms).
func parseAddr(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().Unmap(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if !a.Unmap().Is4() {
		return netip.Addr{}, fmt.Errorf("%s is not IPv4", s)
	}
	return a.Unmap(), nil
}

// validID checks an id Docker sends (network and endpoint ids are 64 hex
// digits; shorter ones are accepted for other callers and tests).
func validID(what, id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("flatmesh: %s id %q is empty or longer than 64 characters", what, id)
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_') {
			return fmt.Errorf("flatmesh: %s id %q has a character other than letters, digits, - and _", what, id)
		}
	}
	return nil
}
