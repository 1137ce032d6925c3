package lab

import (
	"context"
	"fmt"
	"net/netip"
)

// The routed variant (Options.Subnets = 2, vxlan or wireguard mode): two underlay
// subnets behind a router, for direct routing (same-subnet peers routed
// plainly, peers across the router tunnelled). The switch namespace holds a
// second bridge, "sw1"; odd hosts sit on sw0 in 10.99.0.0/24, even hosts
// on sw1 in 10.99.1.0/24; the router "<lab>-pm" (no agent) has eth0 on sw0
// (10.99.0.254) and eth1 on sw1 (10.99.1.254), forwards, and is every
// host's default gateway.
var routedSubnets = [2]netip.Prefix{
	netip.MustParsePrefix("10.99.0.0/24"),
	netip.MustParsePrefix("10.99.1.0/24"),
}

const (
	secondBridge = "sw1"
	routerOctet  = 254
)

func (o Options) validateSubnets() error {
	switch {
	case o.Subnets < 0 || o.Subnets > 2:
		return fmt.Errorf("invalid subnets %d: want 1 or 2", o.Subnets)
	case o.Subnets == 2 && o.Mode == ModeFlat:
		return fmt.Errorf("subnets 2 is an overlay lab (vxlan or wireguard), not %s", o.Mode)
	}
	return nil
}

// routedAddr is address number n of subnet s (0 or 1), with its length.
func routedAddr(s, n int) netip.Prefix {
	a := routedSubnets[s].Addr().As4()
	a[3] = byte(n)
	return netip.PrefixFrom(netip.AddrFrom4(a), routedSubnets[s].Bits())
}

// planRouter records the router when the lab has two subnets.
func (d *description) planRouter(subnets int) {
	if subnets != 2 {
		return
	}
	d.Subnets = 2
	d.Router = &Machine{Name: "pm", Netns: plainNetns(d.Name), Addr: routedAddr(0, routerOctet)}
}

// routedHost is host i's underlay address and gateway (the router's leg on
// its subnet).
func routedHost(i int) (netip.Prefix, netip.Addr) {
	s := (i - 1) % 2
	return routedAddr(s, i), routedAddr(s, routerOctet).Addr()
}

// Subnet is the index (0 or 1) of the underlay subnet host h sits on; 0 in
// a lab with one subnet.
func (h Host) Subnet() int {
	if routedSubnets[1].Contains(h.Addr()) {
		return 1
	}
	return 0
}

// Router is the routed variant's router (Options.Subnets = 2).
func (l *Lab) Router() (Machine, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.d.Router == nil {
		return Machine{}, false
	}
	return *l.d.Router, true
}

// buildRouter makes the second bridge and the router with a leg on each;
// nothing without a router.
func (l *Lab) buildRouter(ctx context.Context) error {
	l.mu.Lock()
	r, sw := l.d.Router, l.d.Switch.Netns
	l.mu.Unlock()
	if r == nil {
		return nil
	}
	l.say("creating router %s (%s and %s) between switches %s and %s", r.Netns, r.Addr,
		routedAddr(1, routerOctet), bridgeName, secondBridge)
	if err := l.recordNamespace(r.Netns); err != nil {
		return err
	}
	if err := createNetns(ctx, l.log, r.Netns); err != nil {
		return err
	}
	steps := []ipStep{
		{sw, []string{"link", "add", secondBridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"}},
		{sw, []string{"link", "set", secondBridge, "up"}},
	}
	if err := runSteps(ctx, l, steps); err != nil {
		return err
	}
	if err := plugIn(ctx, l.log, sw, r.Name, r.Netns, r.Addr, netip.Addr{}); err != nil {
		return err
	}
	steps = []ipStep{
		{sw, []string{"link", "add", r.Name + "1", "type", "veth", "peer", "name", "eth1", "netns", r.Netns}},
		{sw, []string{"link", "set", r.Name + "1", "master", secondBridge, "up"}},
		{r.Netns, []string{"addr", "add", routedAddr(1, routerOctet).String(), "dev", "eth1"}},
		{r.Netns, []string{"link", "set", "eth1", "up"}},
	}
	if err := runSteps(ctx, l, steps); err != nil {
		return err
	}
	if _, err := run(ctx, l.log, "ip", "netns", "exec", r.Netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	return nil
}

// moveToSubnet moves the switch port of a host on the second subnet to the
// second bridge.
func (l *Lab) moveToSubnet(ctx context.Context, h Host) error {
	l.mu.Lock()
	routed, sw := l.d.Router != nil, l.d.Switch.Netns
	l.mu.Unlock()
	if !routed || h.Subnet() == 0 {
		return nil
	}
	return runSteps(ctx, l, []ipStep{{sw, []string{"link", "set", h.Name, "master", secondBridge}}})
}

func runSteps(ctx context.Context, l *Lab, steps []ipStep) error {
	for _, s := range steps {
		if err := ip(ctx, l.log, s.ns, s.args...); err != nil {
			return fmt.Errorf("routed lab: %w", err)
		}
	}
	return nil
}
