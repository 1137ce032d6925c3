package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/flatmesh/flatmesh/agent/firewall"
)

// The reference paths are built by hand with ip/bridge/ethtool commands,
// with the lab's shapes: a switch namespace holding bridge sw0 (STP off),
// host namespaces plugged into it by a veth (eth0 inside the host), and
// container namespaces on a veth from their host.

// topo is one hand-built set of namespaces named "<prefix>-sw", "-h1", ...
type topo struct {
	e      *env
	prefix string
}

func (t topo) sw() string            { return t.prefix + "-sw" }
func (t topo) host(i int) string     { return t.prefix + "-h" + strconv.Itoa(i) }
func (t topo) cont(i int) string     { return t.prefix + "-c" + strconv.Itoa(i) }
func (t topo) hostPort(i int) string { return "h" + strconv.Itoa(i) }

// steps runs ip commands (each {ns, args...}) in order.
func steps(ctx context.Context, cmds ...[]string) error {
	for _, c := range cmds {
		if err := ip(ctx, c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// newTopo makes the switch namespace and its bridge.
func (e *env) newTopo(ctx context.Context, prefix string) (topo, error) {
	t := topo{e: e, prefix: prefix}
	if err := e.createNetns(ctx, t.sw()); err != nil {
		return t, err
	}
	return t, steps(ctx,
		[]string{t.sw(), "link", "add", "sw0", "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		[]string{t.sw(), "link", "set", "sw0", "up"})
}

// addHost makes host i, plugged into the switch as eth0 with addr.
func (t topo) addHost(ctx context.Context, i int, addr netip.Prefix) error {
	ns := t.host(i)
	if err := t.e.createNetns(ctx, ns); err != nil {
		return err
	}
	return steps(ctx,
		[]string{t.sw(), "link", "add", t.hostPort(i), "type", "veth", "peer", "name", "eth0", "netns", ns},
		[]string{t.sw(), "link", "set", t.hostPort(i), "master", "sw0", "up"},
		[]string{ns, "addr", "add", addr.String(), "dev", "eth0"},
		[]string{ns, "link", "set", "eth0", "up"})
}

// contSpec is a container namespace on a veth from its host.
type contSpec struct {
	index  int
	host   int
	hostIf string // the veth end in the host
	master string // bridge for hostIf; "" leaves it unbridged
	mtu    int    // both ends
	addr   netip.Prefix
	gw     netip.Addr // default route
}

// addContainer makes container c.index: eth0 inside with c.addr, default
// route via c.gw; the host end hostIf up (on master when given).
func (t topo) addContainer(ctx context.Context, c contSpec) error {
	ns, hns, mtu := t.cont(c.index), t.host(c.host), strconv.Itoa(c.mtu)
	if err := t.e.createNetns(ctx, ns); err != nil {
		return err
	}
	cmds := [][]string{
		{hns, "link", "add", c.hostIf, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu, "netns", ns},
		{ns, "addr", "add", c.addr.String(), "dev", "eth0"},
		{ns, "link", "set", "eth0", "up"},
		{ns, "route", "add", "default", "via", c.gw.String(), "dev", "eth0"},
	}
	if c.master != "" {
		cmds = append(cmds, []string{hns, "link", "set", c.hostIf, "master", c.master})
	}
	cmds = append(cmds, []string{hns, "link", "set", c.hostIf, "up"})
	return steps(ctx, cmds...)
}

func forwarding(ctx context.Context, ns string) error {
	_, err := nsExec(ctx, ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return err
}

// Overlay addressing of the hand-built VXLAN and routed paths: host i owns
// 10.213.0.(64(i-1))/26 with the gateway .1 of it on its side, like
// flatmesh's blocks; the underlay is 10.99.0.i/24 like the lab's.
func refBlock(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, 0, byte(64 * (i - 1))}), 26)
}
func refGateway(i int) netip.Addr { return refBlock(i).Addr().Next() }
func refContainer(i int) netip.Prefix {
	return netip.PrefixFrom(refGateway(i).Next(), 26)
}
func refUnderlay(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, 0, byte(i)}), 24)
}
func refVTEPMAC(i int) string { return fmt.Sprintf("0e:fd:0a:63:00:%02x", i) }

// refPath names a hand-built path: its namespace prefix and its row.
type refPath struct {
	Prefix, Key, Name, Label string
}

// vxlanRef describes how to build the hand-built VXLAN path.
type vxlanRef struct {
	refPath
	MTU        int
	TxChecksum bool // tx checksum offload on the VXLAN device
	// Routed: no bridge; the gateway sits on the host end of the
	// container's veth, which the host routes to (Calico's model: no
	// br_netfilter on container frames). Otherwise as flatmesh builds it.
	Routed bool
}

// buildVXLANRef builds what flatmesh builds in vxlan mode, by hand: per
// host a bridge holding the block's gateway, a VXLAN device (VNI 4213, UDP
// 4789, local underlay address, bound to eth0, learning off, no group),
// and for the peer a permanent FDB entry (peer VTEP MAC -> peer underlay),
// a permanent neighbour (peer gateway -> peer VTEP MAC) and an on-link
// route (peer block via peer gateway, src our gateway); the container on a
// veth in the bridge (r.Routed: on a veth whose host end holds the
// gateway). Returns the path from container 1 to container 2.
func (e *env) buildVXLANRef(ctx context.Context, r vxlanRef) (benchPath, error) {
	t, err := e.newTopo(ctx, r.Prefix)
	if err != nil {
		return benchPath{}, err
	}
	mtu, tx := strconv.Itoa(r.MTU), "off"
	if r.TxChecksum {
		tx = "on"
	}
	for i := 1; i <= 2; i++ {
		h := t.host(i)
		if err := t.addHost(ctx, i, refUnderlay(i)); err != nil {
			return benchPath{}, err
		}
		gw, hostIf, master := netip.PrefixFrom(refGateway(i), 26), "vc"+strconv.Itoa(i), "br0"
		var err error
		if r.Routed {
			master = ""
		} else {
			err = steps(ctx,
				[]string{h, "link", "add", "br0", "mtu", mtu, "type", "bridge", "stp_state", "0", "forward_delay", "0"},
				[]string{h, "addr", "add", gw.String(), "dev", "br0"},
				[]string{h, "link", "set", "br0", "up"})
		}
		if err == nil {
			err = steps(ctx,
				[]string{h, "link", "add", "vx0", "address", refVTEPMAC(i), "mtu", mtu, "type", "vxlan", "id", "4213",
					"local", refUnderlay(i).Addr().String(), "dev", "eth0", "dstport", "4789", "nolearning",
					"udpcsum", "noudp6zerocsumtx", "noudp6zerocsumrx"},
				[]string{h, "link", "set", "vx0", "up"})
		}
		if err == nil {
			_, err = nsExec(ctx, h, "ethtool", "-K", "vx0", "tx", tx)
		}
		if err == nil {
			err = forwarding(ctx, h)
		}
		if err == nil {
			err = t.addContainer(ctx, contSpec{index: i, host: i, hostIf: hostIf, master: master,
				mtu: r.MTU, addr: refContainer(i), gw: refGateway(i)})
		}
		if err == nil && r.Routed {
			err = ip(ctx, h, "addr", "add", gw.String(), "dev", hostIf)
		}
		if err != nil {
			return benchPath{}, fmt.Errorf("hand-built vxlan: %w", err)
		}
	}
	for i := 1; i <= 2; i++ {
		j := 3 - i
		h := t.host(i)
		if _, err := command(ctx, "bridge", "-n", h, "fdb", "append", refVTEPMAC(j), "dev", "vx0",
			"dst", refUnderlay(j).Addr().String(), "self", "permanent"); err != nil {
			return benchPath{}, fmt.Errorf("hand-built vxlan: %w", err)
		}
		err := steps(ctx,
			[]string{h, "neigh", "replace", refGateway(j).String(), "lladdr", refVTEPMAC(j), "dev", "vx0", "nud", "permanent"},
			[]string{h, "route", "replace", refBlock(j).String(), "via", refGateway(j).String(), "dev", "vx0",
				"onlink", "src", refGateway(i).String()})
		if err != nil {
			return benchPath{}, fmt.Errorf("hand-built vxlan: %w", err)
		}
	}
	return benchPath{Key: r.Key, Name: r.Name, Label: r.Label,
		Client: t.cont(1), Server: t.cont(2), Addr: refContainer(2).Addr()}, nil
}

// buildNative builds the routed path without encapsulation: each container
// on a veth whose host end holds the gateway (no bridge), MTU 1500, and a
// route in each host to the other's container block via the other host's
// underlay address. With bridged, the gateway sits on a bridge br0 and the
// container's veth is a port of it, as flatmesh's containers are (path f).
func (e *env) buildNative(ctx context.Context) (benchPath, error) {
	return e.buildNativePath(ctx, false)
}

func (e *env) buildNativePath(ctx context.Context, bridged bool) (benchPath, error) {
	prefix, key, name, label := nsNative, "c", "native-routed", "native routed"
	if bridged {
		prefix, key, name, label = nsNativeB, "f", "native-routed-bridges", "native routed between bridges"
	}
	t, err := e.newTopo(ctx, prefix)
	if err != nil {
		return benchPath{}, err
	}
	for i := 1; i <= 2; i++ {
		h, j := t.host(i), 3-i
		if err := t.addHost(ctx, i, refUnderlay(i)); err != nil {
			return benchPath{}, err
		}
		hostIf, gwDev, master := "vc"+strconv.Itoa(i), "vc"+strconv.Itoa(i), ""
		if bridged {
			gwDev, master = "br0", "br0"
			err = steps(ctx,
				[]string{h, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"},
				[]string{h, "link", "set", "br0", "up"})
		}
		if err == nil {
			err = t.addContainer(ctx, contSpec{index: i, host: i, hostIf: hostIf, master: master, mtu: 1500,
				addr: refContainer(i), gw: refGateway(i)})
		}
		if err == nil {
			err = steps(ctx,
				[]string{h, "addr", "add", netip.PrefixFrom(refGateway(i), 26).String(), "dev", gwDev},
				[]string{h, "route", "add", refBlock(j).String(), "via", refUnderlay(j).Addr().String(), "dev", "eth0"})
		}
		if err == nil {
			err = forwarding(ctx, h)
		}
		if err != nil {
			return benchPath{}, fmt.Errorf("%s: %w", label, err)
		}
	}
	return benchPath{Key: key, Name: name, Label: label,
		Client: t.cont(1), Server: t.cont(2), Addr: refContainer(2).Addr()}, nil
}

// Flat addressing, as the flat lab's: a 172.16.0.0/16 LAN, hosts counting
// down from .44.254, containers in 172.16.45.0/24, router .0.1.
func flatHost(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, 44, byte(255 - i)}), 16)
}
func flatContainer(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, 45, byte(i)}), 16)
}

var flatRouter = netip.MustParseAddr("172.16.0.1")

// linkMAC reads a link's MAC address with `ip -j`.
func linkMAC(ctx context.Context, ns, dev string) (string, error) {
	out, err := command(ctx, "ip", "-n", ns, "-j", "link", "show", "dev", dev)
	if err != nil {
		return "", err
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return "", fmt.Errorf("reading the mac of %s in %s: %v", dev, ns, err)
	}
	return links[0].Address, nil
}

// buildFlatRef builds what flatmesh's flat mode ends with, by hand: per
// host a bridge with the NIC's MAC (STP off, forward delay 0), the NIC
// enslaved, the host address and default route on the bridge, and a
// container on a veth in the bridge with an address of the LAN.
func (e *env) buildFlatRef(ctx context.Context, r refPath) (benchPath, error) {
	t, err := e.newTopo(ctx, r.Prefix)
	if err != nil {
		return benchPath{}, err
	}
	for i := 1; i <= 2; i++ {
		h := t.host(i)
		if err := t.addHost(ctx, i, flatHost(i)); err != nil {
			return benchPath{}, err
		}
		mac, err := linkMAC(ctx, h, "eth0")
		if err == nil {
			err = steps(ctx,
				[]string{h, "link", "add", "br0", "address", mac, "type", "bridge", "stp_state", "0", "forward_delay", "0"},
				[]string{h, "link", "set", "br0", "up"},
				[]string{h, "addr", "del", flatHost(i).String(), "dev", "eth0"},
				[]string{h, "link", "set", "eth0", "master", "br0"},
				[]string{h, "addr", "add", flatHost(i).String(), "dev", "br0"},
				[]string{h, "route", "add", "default", "via", flatRouter.String(), "dev", "br0"})
		}
		if err == nil {
			err = t.addContainer(ctx, contSpec{index: i, host: i, hostIf: "vc" + strconv.Itoa(i), master: "br0",
				mtu: 1500, addr: flatContainer(i), gw: flatRouter})
		}
		if err != nil {
			return benchPath{}, fmt.Errorf("hand-built flat bridge: %w", err)
		}
	}
	return benchPath{Key: r.Key, Name: r.Name, Label: r.Label,
		Client: t.cont(1), Server: t.cont(2), Addr: flatContainer(2).Addr()}, nil
}

// buildPlain builds two hosts on plain NICs (no bridge): host to host.
func (e *env) buildPlain(ctx context.Context) (benchPath, error) {
	t, err := e.newTopo(ctx, nsPlain)
	if err != nil {
		return benchPath{}, err
	}
	for i := 1; i <= 2; i++ {
		if err := t.addHost(ctx, i, flatHost(i)); err != nil {
			return benchPath{}, fmt.Errorf("plain nics: %w", err)
		}
	}
	return benchPath{Key: "c", Name: "plain-nics", Label: "plain NICs host to host",
		Client: t.host(1), Server: t.host(2), Addr: flatHost(2).Addr()}, nil
}

// copyFirewall copies the iptables and ip6tables rules of namespace from
// (a lab host, as its agent made them) into namespace to (a hand-built
// host), with link names renamed, so that a hand-built path can carry
// exactly flatmesh's netfilter rules.
func copyFirewall(ctx context.Context, from, to string, rename map[string]string) error {
	// The member sets first: a rule that names a missing set is refused.
	for _, f := range []firewall.Family{firewall.IPv4, firewall.IPv6} {
		addrs, exists, err := firewall.MemberSetAddrs(from, f)
		if err == nil && exists {
			err = firewall.SetMemberSet(to, f, addrs)
		}
		if err != nil {
			return fmt.Errorf("copying the member set of %s: %w", from, err)
		}
	}
	for _, fam := range []string{"iptables", "ip6tables"} {
		out, err := nsExec(ctx, from, fam+"-save")
		if err != nil {
			return fmt.Errorf("copying the firewall of %s: %w", from, err)
		}
		rules := renameLinks(string(out), rename)
		if _, err := commandInput(ctx, rules, "ip", "netns", "exec", to, fam+"-restore"); err != nil {
			return fmt.Errorf("copying the firewall of %s into %s: %w", from, to, err)
		}
	}
	return nil
}
