package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// Message kinds: the first byte of every application message this package
// puts on the wire (inside memberlist's user messages).
const (
	kindBroadcast byte = 1 // [1][u8 len][origin][u64 seq][payload]
	kindDirect    byte = 2 // [2][u8 len][from][payload]
	kindLeaving   byte = 3 // [3][u8 len][name]: the sender is leaving (Cluster.Leave)
)

// MaxNameLen is the longest node name New accepts (it travels in every
// application message).
const MaxNameLen = 128

// MaxBroadcastSize is the largest payload Broadcast sends. A gossip packet is
// 1400 bytes before encryption and memberlist's own framing; larger messages
// could never leave the queue, so Broadcast drops them with an error log.
// Bigger data belongs in SendTo or in the push-pull state.
const MaxBroadcastSize = 1024

// dedupWindow is how many distinct broadcasts a node remembers.
const dedupWindow = 4096

// maxQueued bounds the broadcast queue: beyond it the messages that were
// transmitted most are dropped first (memberlist's Prune).
const maxQueued = 1024

// dedup remembers the last dedupWindow distinct (origin, seq) pairs in a FIFO
// ring with a map index: bounded memory, no assumption about ordering or
// clocks. A duplicate can only slip through after dedupWindow newer distinct
// messages, while memberlist retransmits a message for a few gossip rounds
// (seconds): far apart. Safe for concurrent use.
type dedup struct {
	mu   sync.Mutex
	seen map[msgID]struct{}
	ring []msgID
	next int
}

type msgID struct {
	origin string
	seq    uint64
}

func newDedup(window int) *dedup {
	return &dedup{seen: make(map[msgID]struct{}, window), ring: make([]msgID, 0, window)}
}

// first records id and reports whether it was not seen before.
func (d *dedup) first(origin string, seq uint64) bool {
	id := msgID{origin, seq}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[id]; ok {
		return false
	}
	if len(d.ring) < cap(d.ring) {
		d.ring = append(d.ring, id)
	} else {
		delete(d.seen, d.ring[d.next])
		d.ring[d.next] = id
		d.next = (d.next + 1) % len(d.ring)
	}
	d.seen[id] = struct{}{}
	return true
}

// appBroadcast is one queued application message.
type appBroadcast struct{ msg []byte }

var _ memberlist.Broadcast = (*appBroadcast)(nil)

func (b *appBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *appBroadcast) Message() []byte                       { return b.msg }
func (b *appBroadcast) Finished()                             {}

// messenger frames, queues, receives and deduplicates application messages.
// It needs no network, so it is unit-tested directly. Its methods are safe for
// concurrent use and never block (the app callbacks must not block either).
type messenger struct {
	self      string
	onLeaving func(name string) // a member said it is leaving; may be nil
	app       AppDelegate       // may be nil
	log       hclog.Logger
	queue     *memberlist.TransmitLimitedQueue
	seen      *dedup
	seq       atomic.Uint64
}

func newMessenger(self string, app AppDelegate, log hclog.Logger, numNodes func() int, retransmitMult int) *messenger {
	m := &messenger{
		self: self, app: app, log: log, seen: newDedup(dedupWindow),
		queue: &memberlist.TransmitLimitedQueue{NumNodes: numNodes, RetransmitMult: retransmitMult},
	}
	// Sequence numbers start at the wall clock in nanoseconds, so a restarted
	// agent does not reuse the numbers of its previous run.
	m.seq.Store(uint64(time.Now().UnixNano()))
	return m
}

func appendName(b []byte, name string) []byte {
	return append(append(b, byte(len(name))), name...)
}

// broadcast queues payload for every member.
func (m *messenger) broadcast(payload []byte) error {
	if len(payload) > MaxBroadcastSize {
		return fmt.Errorf("broadcast of %d bytes is larger than the limit of %d", len(payload), MaxBroadcastSize)
	}
	seq := m.seq.Add(1)
	msg := make([]byte, 0, 2+len(m.self)+8+len(payload))
	msg = appendName(append(msg, kindBroadcast), m.self)
	msg = binary.BigEndian.AppendUint64(msg, seq)
	msg = append(msg, payload...)
	m.seen.first(m.self, seq)
	m.enqueue(msg)
	return nil
}

func (m *messenger) enqueue(msg []byte) {
	m.queue.QueueBroadcast(&appBroadcast{msg: msg})
	if m.queue.NumQueued() > maxQueued {
		m.queue.Prune(maxQueued)
	}
}

// direct frames payload for SendTo.
func (m *messenger) direct(payload []byte) []byte {
	msg := make([]byte, 0, 2+len(m.self)+len(payload))
	msg = appendName(append(msg, kindDirect), m.self)
	return append(msg, payload...)
}

var errShortMsg = errors.New("truncated message")

// splitName reads a u8-length-prefixed name.
func splitName(b []byte) (string, []byte, error) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, errShortMsg
	}
	return string(b[1 : 1+int(b[0])]), b[1+int(b[0]):], nil
}

// receive handles one message from memberlist (NotifyMsg). buf may be reused
// by memberlist after the call, so everything kept is copied.
func (m *messenger) receive(buf []byte) {
	if len(buf) == 0 {
		return
	}
	switch buf[0] {
	case kindBroadcast:
		m.receiveBroadcast(buf)
	case kindDirect:
		from, payload, err := splitName(buf[1:])
		if err != nil {
			m.log.Warn("dropping a malformed direct message", "error", err)
			return
		}
		if m.app != nil {
			m.app.HandleDirect(from, append([]byte(nil), payload...))
		}
	case kindLeaving:
		name, rest, err := splitName(buf[1:])
		if err != nil || len(rest) != 0 || name == "" {
			m.log.Warn("dropping a malformed leave notice")
			return
		}
		if m.onLeaving != nil && name != m.self {
			m.onLeaving(name)
		}
	default:
		m.log.Warn("dropping a message of unknown kind (newer agent?)", "kind", buf[0])
	}
}

func (m *messenger) receiveBroadcast(buf []byte) {
	origin, rest, err := splitName(buf[1:])
	if err != nil || len(rest) < 8 {
		m.log.Warn("dropping a malformed broadcast", "error", errShortMsg)
		return
	}
	if origin == m.self {
		return // our own message, relayed back
	}
	seq := binary.BigEndian.Uint64(rest)
	if !m.seen.first(origin, seq) {
		return
	}
	// Re-broadcast once (as Serf does): memberlist only retransmits from the
	// sender, which would reach a fraction of a large cluster.
	msg := append([]byte(nil), buf...)
	m.enqueue(msg)
	if m.app != nil {
		m.app.HandleBroadcast(origin, append([]byte(nil), rest[8:]...))
	}
}
