package cluster

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// A member this node's failure detector suspects shows as "suspect" until
// it answers a probe (pingDelegate). memberlist probes members round-robin,
// one per probe interval, so after the member refuted the suspicion (it
// is alive again in memberlist's own view) the next probe of it could be
// up to a whole round away: in a 50-host lab a host reported a refuted
// member as suspect for 40-100 s after a join storm. The recheck pings
// every suspected member once per probe interval, only while any is
// suspected, and clears the mark on the first answer.

// suspectPeer is a suspected member and its gossip address.
type suspectPeer struct {
	name string
	addr netip.AddrPort
}

// suspects lists the suspected members still alive, sorted by name.
func (t *memberTable) suspects() []suspectPeer {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []suspectPeer
	for name := range t.suspect {
		if e := t.m[name]; e != nil && e.peer.State == StateAlive && e.peer.Addr.IsValid() {
			out = append(out, suspectPeer{name: name, addr: netip.AddrPortFrom(e.peer.Addr, e.peer.Port)})
		}
	}
	slices.SortFunc(out, func(a, b suspectPeer) int { return strings.Compare(a.name, b.name) })
	return out
}

// pingSuspects pings every peer at once and clears the mark of each that
// answers.
func pingSuspects(peers []suspectPeer, ping func(name string, addr netip.AddrPort) error, clear func(name string)) {
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ping(p.name, p.addr) == nil {
				clear(p.name)
			}
		}()
	}
	wg.Wait()
}

// suspectRecheck runs the recheck until the cluster is shut down.
func (c *Cluster) suspectRecheck() {
	defer c.wg.Done()
	ping := func(name string, addr netip.AddrPort) error {
		_, err := c.ml.Ping(name, net.UDPAddrFromAddrPort(addr))
		return err
	}
	r := retryLoop[suspectPeer]{
		every:   c.timing.ml.ProbeInterval,
		after:   time.After,
		changed: c.suspectKick,
		done:    c.done,
		failed:  c.members.suspects,
		retry: func(peers []suspectPeer) bool {
			if c.gone() {
				return false
			}
			pingSuspects(peers, ping, c.members.clearSuspect)
			return true
		},
	}
	r.run()
}
