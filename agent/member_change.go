package agent

import (
	"bytes"
	"sync"

	"github.com/flatmesh/flatmesh/cluster"
)

// memberWatch remembers what the last reconcile trigger saw of the
// members, so that a member change a pass would not act on wakes no pass.
//
// Every change of block ownership anywhere changes every member's IPAM
// digest (Meta.IPAMDigest, gossiped so that attach readiness can tell when
// the peers agree): one new block in an n-host cluster is n metadata
// updates, each heard by every host. A pass for each made the passes per
// host grow with n per block, n^2 per host over a cluster's first blocks
// (profiled at 50 hosts: most of an agent's CPU in the block phase). A
// pass reads no digest; the ownership change itself pokes the loop through
// the allocator (afterIPAMChange).
type memberWatch struct {
	mu      sync.Mutex
	last    []byte // membersKey of the last poke; nil before the first
	skipped uint64 // changes that woke no pass (tests, debugging)
}

// membersChanged is the cluster's OnChange: it pokes the reconcile loop
// unless the members differ from the last poke only in their IPAM digests;
// every change wakes the waiters of a.changed.
func (a *Agent) membersChanged() {
	cl := a.clRef.Load()
	if cl == nil {
		a.poke()
		return
	}
	key := membersKey(cl.Members())
	w := &a.memberWatch
	w.mu.Lock()
	same := w.last != nil && bytes.Equal(w.last, key)
	if same {
		w.skipped++
	} else {
		w.last = key
	}
	w.mu.Unlock()
	if !same {
		a.poke()
		return
	}
	// No pass, but attach readiness (awaitPeersAgree) waits for exactly
	// these digest changes.
	a.changed.fire()
}

// membersKey encodes what a reconcile pass reads of the members: name,
// address, port, state and every metadata field but the IPAM digest (a new
// Meta field counts by default, being encoded).
func membersKey(members []cluster.Peer) []byte {
	var b []byte
	for _, p := range members {
		m := p.Meta
		m.IPAMDigest = 0
		enc, err := m.Encode()
		if err != nil {
			enc = []byte(err.Error()) // cannot happen: members' meta decoded
		}
		b = appendLenPrefixed(b, []byte(p.Name))
		b = appendLenPrefixed(b, p.Addr.AsSlice())
		b = appendLenPrefixed(b, []byte(p.State))
		b = append(b, byte(p.Port>>8), byte(p.Port))
		b = appendLenPrefixed(b, enc)
	}
	return b
}

func appendLenPrefixed(b, v []byte) []byte {
	return append(append(b, byte(len(v)>>8), byte(len(v))), v...)
}

func (w *memberWatch) skippedCount() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.skipped
}
