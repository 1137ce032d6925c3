package cluster

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// Timing profiles (Config.Timing).
const (
	// TimingLAN is memberlist's DefaultLANConfig: probe every 1 s (500 ms
	// timeout), gossip every 200 ms to 3 nodes, suspicion 4*log10(n)*1 s
	// (at least 4 s, up to 6x that), push-pull every 30 s. A killed peer is
	// marked failed after roughly 5-10 s.
	TimingLAN = "lan"
	// TimingLocal is for the network-namespace lab and tests, where the
	// "network" is one kernel: see localTiming for the values. A 5-node
	// cluster converges in about a second and a killed peer is marked failed
	// after roughly 2-4 s.
	TimingLocal = "local"
)

// localTiming tightens the LAN profile:
//   - gossip every 50 ms to 3 nodes: a change reaches 5 nodes in ~2 rounds
//   - probe every 500 ms with a 400 ms timeout, 2 indirect probes (shorter
//     timeouts gave false suspicions with five agents on two busy cores)
//   - suspicion 4*500 ms = 2 s (shortened by confirmations), at most 3x
//   - push-pull every 5 s, forget dead nodes for gossip after 5 s
//   - TCP timeout 2 s (joins to a dead address fail fast)
func localTiming(c *memberlist.Config) {
	c.GossipInterval = 50 * time.Millisecond
	c.GossipNodes = 3
	c.ProbeInterval = 500 * time.Millisecond
	c.ProbeTimeout = 400 * time.Millisecond
	c.IndirectChecks = 2
	c.SuspicionMult = 4
	c.SuspicionMaxTimeoutMult = 3
	c.RetransmitMult = 3
	c.PushPullInterval = 5 * time.Second
	c.GossipToTheDeadTime = 5 * time.Second
	c.TCPTimeout = 2 * time.Second
}

// timingProfile is what the rest of the package needs from a profile.
type timingProfile struct {
	ml           *memberlist.Config
	retryMin     time.Duration // JoinRetry first backoff
	retryMax     time.Duration // JoinRetry backoff cap
	metaTimeout  time.Duration // UpdateMeta wait for the broadcast
	persistEvery time.Duration // minimum gap between peers.json writes
	refuseWait   time.Duration // how long Join waits for a member's refusal notice
}

func newTiming(name string) (timingProfile, error) {
	c := memberlist.DefaultLANConfig()
	switch name {
	case "", TimingLAN:
		return timingProfile{ml: c, retryMin: time.Second, retryMax: 30 * time.Second,
			metaTimeout: 5 * time.Second, persistEvery: time.Second, refuseWait: 300 * time.Millisecond}, nil
	case TimingLocal:
		localTiming(c)
		return timingProfile{ml: c, retryMin: 200 * time.Millisecond, retryMax: 2 * time.Second,
			metaTimeout: 2 * time.Second, persistEvery: 100 * time.Millisecond, refuseWait: 100 * time.Millisecond}, nil
	}
	return timingProfile{}, fmt.Errorf("unknown gossip timing %q (want %q or %q)", name, TimingLAN, TimingLocal)
}
