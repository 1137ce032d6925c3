package cluster

import (
	"net/netip"
	"time"
)

// memberlist forgets a failed node for gossip after GossipToTheDeadTime, so
// two sides of a partition that outlasts it never talk again on their own:
// each thinks the other dead. Like Serf's reconnector, the cluster keeps
// trying the failed (not left) members at an interval until they answer.

// reconnectInterval returns how often failed members are retried.
func (t timingProfile) reconnectInterval() time.Duration {
	if t.retryMin < time.Second {
		return 2 * time.Second // the local (lab) profile
	}
	return 30 * time.Second
}

// reconnector runs until Shutdown.
func (c *Cluster) reconnector() {
	defer c.wg.Done()
	tick := time.NewTicker(c.timing.reconnectInterval())
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		c.stateMu.Lock()
		gone := c.left || c.down
		c.stateMu.Unlock()
		if gone {
			return
		}
		for _, addr := range failedAddrs(c.Members(), c.cfg.Name) {
			if _, err := c.Join([]string{addr.String()}); err == nil {
				c.log.Info("reconnected to a member marked failed", "addr", addr)
			} else {
				c.log.Debug("failed member still unreachable", "addr", addr, "error", err)
			}
		}
	}
}

// failedAddrs lists the gossip addresses of failed members other than self.
func failedAddrs(members []Peer, self string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, p := range members {
		if p.State == StateFailed && p.Name != self && p.Addr.IsValid() {
			out = append(out, netip.AddrPortFrom(p.Addr, p.Port))
		}
	}
	return out
}
