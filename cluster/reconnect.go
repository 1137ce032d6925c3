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
	r := retryLoop[netip.AddrPort]{
		every:   c.timing.reconnectInterval(),
		after:   time.After,
		changed: c.failKick,
		done:    c.done,
		failed:  func() []netip.AddrPort { return failedAddrs(c.Members(), c.cfg.Name) },
		retry: func(addrs []netip.AddrPort) bool {
			if c.gone() {
				return false
			}
			for _, addr := range addrs {
				if _, err := c.Join([]string{addr.String()}); err == nil {
					c.log.Info("reconnected to a member marked failed", "addr", addr)
				} else {
					c.log.Debug("failed member still unreachable", "addr", addr, "error", err)
				}
			}
			return true
		},
	}
	r.run()
}

// retryLoop retries the failed members every `every` while there are any,
// and sleeps without a timer while there are none (it used to tick for
// ever: an idle agent woke every interval to find nobody to retry). A
// member change (changed) makes it look again; the first retry of a member
// comes one interval after the change that made it failed. The reconnector
// retries failed members' addresses with it, the suspect recheck
// (suspect.go) pings suspected members.
type retryLoop[T any] struct {
	every   time.Duration
	after   func(time.Duration) <-chan time.Time // time.After; a fake clock in tests
	changed <-chan struct{}                      // poked (coalesced) on member changes
	done    <-chan struct{}
	failed  func() []T
	retry   func([]T) bool // false: stop (left or shut down)
}

func (r retryLoop[T]) run() {
	var due <-chan time.Time // armed only while some member is failed
	for {
		if due == nil && len(r.failed()) > 0 {
			due = r.after(r.every)
		}
		select {
		case <-r.done:
			return
		case <-r.changed:
			continue
		case <-due:
			due = nil
		}
		if addrs := r.failed(); len(addrs) > 0 && !r.retry(addrs) {
			return
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
