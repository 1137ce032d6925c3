package agent

import (
	"errors"

	"github.com/flatmesh/flatmesh/agent/firewall"
)

// ensureRules programs the forwarding and NAT chains, then the raw-table
// chains that keep cluster-internal traffic (and the packets of the tunnel
// on UDP port tunnelPort, 0 for none) out of connection tracking (the
// conntrack cost was most of the gap to a hand-built path).
func ensureRules(o firewall.Options, tunnelPort int) error {
	if err := firewall.Ensure(o); err != nil {
		return err
	}
	return firewall.EnsureNoTrack(o, tunnelPort)
}

// removeRules removes both sets of chains (leave --purge).
func removeRules(o firewall.Options) error {
	return errors.Join(firewall.Remove(o), firewall.RemoveNoTrack(o))
}
