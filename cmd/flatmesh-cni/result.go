package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/flatmesh/flatmesh/agent/api"
)

// buildResult turns the agent's answer to ADD into a CNI result: the host
// veth and the container interface (with its sandbox), the address with
// its gateway, a default route via the gateway, and DNS. A previous result
// of the chain is kept and ours appended to it.
func buildResult(att api.CNIAttachment, sandbox string, dns types.DNS, prev types.Result) (*current.Result, error) {
	addr, err := netip.ParsePrefix(att.IP)
	if err != nil {
		return nil, fmt.Errorf("the agent answered an address %q that is not ADDR/LEN: %w", att.IP, err)
	}
	var gw netip.Addr
	if att.Gateway != "" {
		if gw, err = netip.ParseAddr(att.Gateway); err != nil {
			return nil, fmt.Errorf("the agent answered a gateway %q that is not an address: %w", att.Gateway, err)
		}
	}
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	if prev != nil {
		if res, err = current.NewResultFromResult(prev); err != nil {
			return nil, fmt.Errorf("converting prevResult: %w", err)
		}
	}
	n := len(res.Interfaces)
	res.Interfaces = append(res.Interfaces,
		&current.Interface{Name: att.HostIf, Mac: att.HostMAC, Mtu: att.MTU},
		&current.Interface{Name: att.IfName, Mac: att.MAC, Mtu: att.MTU, Sandbox: sandbox})
	ipc := &current.IPConfig{Interface: current.Int(n + 1), Address: ipNet(addr)}
	if gw.IsValid() {
		ipc.Gateway = net.IP(gw.AsSlice())
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		res.Routes = append(res.Routes, &types.Route{Dst: ipNet(def), GW: ipc.Gateway})
	}
	res.IPs = append(res.IPs, ipc)
	res.DNS = mergeDNS(res.DNS, dns)
	return res, nil
}

func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// agentDNS reads the cluster DNS the agent offers this container from its
// answer (api.Attachment): "dns" is a list of server addresses and
// "dns_domain" the cluster domain. Agents without cluster DNS send
// neither; then the result is empty.
func agentDNS(raw []byte) (types.DNS, error) {
	var hook struct {
		DNS    json.RawMessage `json:"dns"`
		Domain string          `json:"dns_domain"`
	}
	var out types.DNS
	if err := json.Unmarshal(raw, &hook); err != nil {
		return out, fmt.Errorf("reading dns from the agent's answer: %w", err)
	}
	if len(hook.DNS) > 0 && string(hook.DNS) != "null" {
		if err := json.Unmarshal(hook.DNS, &out.Nameservers); err != nil {
			return out, fmt.Errorf("the agent's \"dns\" is not a list of server addresses: %s", hook.DNS)
		}
	}
	if hook.Domain != "" {
		out.Domain = hook.Domain
	}
	if out.Domain != "" && !slices.Contains(out.Search, out.Domain) {
		out.Search = append([]string{out.Domain}, out.Search...)
	}
	for _, s := range out.Nameservers {
		if _, err := netip.ParseAddr(s); err != nil {
			return types.DNS{}, fmt.Errorf("the agent offered a DNS server %q that is not an address", s)
		}
	}
	return out, nil
}

// mergeDNS keeps what a lays down (the configuration's or an earlier
// plugin's "dns") and fills the rest from b (the agent's cluster DNS):
// servers and domain from a when it has them, search lists joined.
func mergeDNS(a, b types.DNS) types.DNS {
	out := a
	if len(out.Nameservers) == 0 {
		out.Nameservers = b.Nameservers
	}
	if out.Domain == "" {
		out.Domain = b.Domain
	}
	for _, s := range b.Search {
		if !slices.Contains(out.Search, s) {
			out.Search = append(out.Search, s)
		}
	}
	return out
}

// checkPrevResult compares the result the runtime kept from ADD with what
// the agent holds now: the container interface and its address must be
// there. It returns a sentence for each difference.
func checkPrevResult(prev types.Result, att api.CNIAttachment) ([]string, error) {
	if prev == nil {
		return nil, nil
	}
	res, err := current.NewResultFromResult(prev)
	if err != nil {
		return nil, fmt.Errorf("converting prevResult: %w", err)
	}
	addr, err := netip.ParsePrefix(att.IP)
	if err != nil {
		return nil, fmt.Errorf("the agent answered an address %q that is not ADDR/LEN: %w", att.IP, err)
	}
	idx := -1
	for i, ifc := range res.Interfaces {
		if ifc.Name == att.IfName && ifc.Sandbox != "" {
			idx = i
		}
	}
	if idx < 0 {
		return []string{fmt.Sprintf("the runtime's result of ADD names no interface %s in a sandbox", att.IfName)}, nil
	}
	for _, ipc := range res.IPs {
		if ipc.Interface == nil || *ipc.Interface != idx {
			continue
		}
		ones, _ := ipc.Address.Mask.Size()
		if got, ok := netip.AddrFromSlice(ipc.Address.IP); ok && netip.PrefixFrom(got.Unmap(), ones) == addr {
			return nil, nil
		}
	}
	return []string{fmt.Sprintf("the runtime's result of ADD does not hold %s, the address the agent gave %s", addr, att.IfName)}, nil
}
