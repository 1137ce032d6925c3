package cluster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// recorder is an AppDelegate that records what it is given.
type recorder struct {
	mu      sync.Mutex
	bcasts  map[string]int // "origin/payload" -> deliveries
	directs []string       // "from/payload"
	merges  [][]Peer
	refuse  error
	state   []byte
	merged  [][]byte
	from    []string // senders of merged
}

var _ AppDelegate = (*recorder)(nil)

func newRecorder() *recorder { return &recorder{bcasts: make(map[string]int)} }

func (r *recorder) HandleBroadcast(origin string, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bcasts[origin+"/"+string(payload)]++
}

func (r *recorder) HandleDirect(from string, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.directs = append(r.directs, from+"/"+string(payload))
}

func (r *recorder) LocalState(join bool) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

func (r *recorder) MergeRemoteState(from string, buf []byte, join bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.merged = append(r.merged, append([]byte(nil), buf...))
	r.from = append(r.from, from)
}

func (r *recorder) CheckMerge(remote []Peer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.merges = append(r.merges, remote)
	return r.refuse
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bcasts[key]
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.bcasts {
		n += c
	}
	return n
}

func TestDedupFirst(t *testing.T) {
	d := newDedup(3)
	if !d.first("a", 1) || d.first("a", 1) {
		t.Fatal("a/1 not deduplicated")
	}
	if !d.first("b", 1) {
		t.Fatal("same seq from another origin treated as duplicate")
	}
	d.first("a", 2)
	d.first("a", 3) // evicts a/1, the oldest
	if d.first("b", 1) || d.first("a", 3) {
		t.Error("recent ids forgotten")
	}
	if !d.first("a", 1) {
		t.Error("the oldest id was not evicted at capacity")
	}
	if len(d.seen) != 3 || len(d.ring) != 3 {
		t.Errorf("memory not bounded: %d seen, %d ring", len(d.seen), len(d.ring))
	}
}

// testIdentity is a fixed signing key per name, so test messengers can pin
// each other's keys.
func testIdentity(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("test identity " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// testMembers are the names every test messenger has pinned.
var testMembers = []string{"a", "b", "c", "d", string(bytes.Repeat([]byte{'n'}, MaxNameLen))}

func newTestMessenger(self string, app AppDelegate, nodes int) *messenger {
	pins := newPinStore()
	for _, n := range testMembers {
		pins.pinFirst(n, publicKey(testIdentity(n)), time.Now())
	}
	return newMessenger(self, messengerOpts{key: testIdentity(self), pins: pins, app: app,
		log: hclog.NewNullLogger(), numNodes: func() int { return nodes }, mult: 3})
}

func TestBroadcastDeliveredAndRelayedOnce(t *testing.T) {
	sender := newTestMessenger("a", nil, 5)
	if err := sender.broadcast([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	msgs := sender.queue.GetBroadcasts(2, 1400)
	if len(msgs) != 1 {
		t.Fatalf("sender queued %d messages", len(msgs))
	}
	wire := msgs[0]
	if wire[0] != kindBroadcast {
		t.Fatalf("kind byte %d", wire[0])
	}

	app := newRecorder()
	recv := newTestMessenger("b", app, 5)
	buf := append([]byte(nil), wire...)
	for range 4 { // the sender's retransmits and other members' relays
		recv.receive(buf)
	}
	if got := app.count("a/hello"); got != 1 {
		t.Errorf("delivered %d times, want 1", got)
	}
	if n := recv.queue.NumQueued(); n != 1 {
		t.Errorf("receiver queued %d relays, want 1", n)
	}
	relayed := recv.queue.GetBroadcasts(2, 1400)
	if len(relayed) != 1 || !bytes.Equal(relayed[0], wire) {
		t.Errorf("relay is not the original message: %q", relayed)
	}
	// memberlist may reuse its buffer after NotifyMsg: our copies survive.
	for i := range buf {
		buf[i] = 0
	}
	if relayed := recv.queue.GetBroadcasts(2, 1400); len(relayed) != 1 || !bytes.Equal(relayed[0], wire) {
		t.Error("queued relay shares memberlist's buffer")
	}

	// A third member receiving the relay delivers it once too.
	app3 := newRecorder()
	third := newTestMessenger("c", app3, 5)
	third.receive(relayed[0])
	third.receive(wire)
	if app3.count("a/hello") != 1 || third.queue.NumQueued() != 1 {
		t.Errorf("third member: %d deliveries, %d queued", app3.count("a/hello"), third.queue.NumQueued())
	}
}

func TestBroadcastFromSelfIgnored(t *testing.T) {
	app := newRecorder()
	m := newTestMessenger("a", app, 3)
	_ = m.broadcast([]byte("x"))
	wire := m.queue.GetBroadcasts(2, 1400)[0]
	before := m.queue.NumQueued()
	m.receive(wire)
	if app.total() != 0 || m.queue.NumQueued() != before {
		t.Error("own broadcast delivered or relayed")
	}
}

func TestBroadcastSequencesDistinct(t *testing.T) {
	app := newRecorder()
	a := newTestMessenger("a", nil, 2)
	b := newTestMessenger("b", app, 2)
	for i := range 10 {
		_ = a.broadcast(fmt.Appendf(nil, "m%d", i))
	}
	for _, w := range a.queue.GetBroadcasts(2, 1<<20) {
		b.receive(w)
	}
	if app.total() != 10 {
		t.Errorf("delivered %d distinct messages, want 10", app.total())
	}
}

func TestBroadcastTooLarge(t *testing.T) {
	m := newTestMessenger("a", nil, 2)
	if err := m.broadcast(make([]byte, MaxBroadcastSize+1)); err == nil {
		t.Error("oversized broadcast accepted")
	}
	if err := m.broadcast(make([]byte, MaxBroadcastSize)); err != nil {
		t.Errorf("broadcast at the limit: %v", err)
	}
	// The largest message with the longest name fits a gossip packet
	// (1400 bytes minus encryption and memberlist framing).
	long := newTestMessenger(string(bytes.Repeat([]byte{'n'}, MaxNameLen)), nil, 2)
	_ = long.broadcast(make([]byte, MaxBroadcastSize))
	if got := long.queue.GetBroadcasts(3, 1400-2-29); len(got) != 1 {
		t.Error("a maximal broadcast does not fit a gossip packet")
	}
}

func TestDirectAndMalformed(t *testing.T) {
	app := newRecorder()
	a := newTestMessenger("a", nil, 2)
	b := newTestMessenger("b", app, 2)
	b.receive(a.direct("b", []byte("hi")))
	b.receive(a.direct("c", []byte("for c"))) // replayed to b: refused
	for _, junk := range [][]byte{nil, {}, {kindDirect}, {kindDirect, 9, 'x'}, {kindBroadcast, 1, 'a', 0, 0}, {99, 1, 2},
		{kindDirectV0, 1, 'a', 'h', 'i'}, {kindBroadcastV0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 1, 'x'}} {
		b.receive(junk)
	}
	if len(app.directs) != 1 || app.directs[0] != "a/hi" || app.total() != 0 {
		t.Errorf("directs %q, broadcasts %d", app.directs, app.total())
	}
}
