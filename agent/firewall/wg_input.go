package firewall

import "fmt"

// InputChain holds the rules that scope the WireGuard port to members.
const InputChain = "FLATMESH-INPUT"

const inputComment = "flatmesh: wireguard port"

// wgInputChains is the INPUT chain of wireguard mode: the WireGuard port
// accepts packets from members' underlay addresses only. Without a port,
// nothing.
func wgInputChains(o Options, f Family) []Chain {
	if o.WGPort == 0 {
		return nil
	}
	c := Chain{Table: "filter", Name: InputChain, Hook: "INPUT", Jump: jumpSpec(inputComment, InputChain)}
	for _, p := range normalize(o.WGPeers, f) {
		c.Rules = append(c.Rules, fmt.Sprintf("-s %s -p udp -m udp --dport %d -j ACCEPT", p, o.WGPort))
	}
	c.Rules = append(c.Rules, fmt.Sprintf("-p udp -m udp --dport %d -j DROP", o.WGPort))
	return []Chain{c}
}
