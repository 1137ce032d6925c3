package cluster

import (
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Reasons a received message is dropped (Cluster.Dropped counts them).
const (
	dropUnsigned     = "unsigned"      // a kind of agents before signing, or an unsigned state
	dropNonMember    = "non-member"    // sender not a member or no key pinned for it
	dropBadSig       = "bad-signature" // does not verify against the pinned key
	dropMalformed    = "malformed"
	dropMisaddressed = "misaddressed" // a direct message for another member (a replay)
	dropUnknownKind  = "unknown-kind" // a newer agent?
)

// dropWhy is the log line of each reason.
var dropWhy = map[string]string{
	dropUnsigned:     "dropping unsigned gossip messages (an agent from before signing? every member must run the same version)",
	dropNonMember:    "dropping gossip messages from a sender that is not a member with a pinned key",
	dropBadSig:       "dropping gossip messages whose signature does not verify against the sender's pinned key (forged, or a name reused by another host)",
	dropMalformed:    "dropping malformed gossip messages",
	dropMisaddressed: "dropping direct messages addressed to another member (replayed)",
	dropUnknownKind:  "dropping gossip messages of an unknown kind (a newer agent?)",
}

// dropEvery is how often one reason is logged at most.
const dropEvery = time.Minute

// dropCounter counts dropped messages by reason and logs each reason at
// most once per dropEvery. Safe for concurrent use; never blocks.
type dropCounter struct {
	log    hclog.Logger
	mu     sync.Mutex
	counts map[string]uint64
	logged map[string]time.Time
}

func newDropCounter(log hclog.Logger) *dropCounter {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &dropCounter{log: log, counts: map[string]uint64{}, logged: map[string]time.Time{}}
}

// drop counts one message dropped for reason; sender may be "".
func (d *dropCounter) drop(reason, sender string) {
	now := time.Now()
	d.mu.Lock()
	d.counts[reason]++
	n := d.counts[reason]
	last, seen := d.logged[reason]
	doLog := !seen || now.Sub(last) >= dropEvery
	if doLog {
		d.logged[reason] = now
	}
	d.mu.Unlock()
	if doLog {
		d.log.Warn(dropWhy[reason], "sender", sender, "total", n)
	}
}

// snapshot returns the counts so far.
func (d *dropCounter) snapshot() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.counts)
}
