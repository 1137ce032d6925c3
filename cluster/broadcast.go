package cluster

import (
	"crypto/ed25519"
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
// puts on the wire (inside memberlist's user messages, and the push-pull
// state). Every kind in use is signed by its sender (identity.go): the
// frame is followed by an ed25519 signature over sigContext and the frame,
// checked against the key pinned for the name in the frame (pins.go).
const (
	// Unsigned kinds of agents before signing: dropped and counted.
	kindBroadcastV0 byte = 1
	kindDirectV0    byte = 2
	kindLeavingV0   byte = 3

	kindBroadcast byte = 4 // [4][u8 len][origin][u64 seq][payload][sig]
	kindDirect    byte = 5 // [5][u8 len][from][u8 len][to][payload][sig]
	kindLeaving   byte = 6 // [6][u8 len][from][u8 len][to][sig]: the sender is leaving (Cluster.Leave)
	kindForgetPin byte = 7 // [7][u8 len][origin][u64 seq][u8 len][name][32 key][sig]: broadcast
	kindState     byte = 8 // [8][u8 len][from][payload][sig]: push-pull state
	kindRefused   byte = 9 // [9][u8 len][from][u8 len][to][reason][sig]: the sender refuses "to" (pins)
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

// has reports whether (origin, seq) was seen, without recording it.
func (d *dedup) has(origin string, seq uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.seen[msgID{origin, seq}]
	return ok
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

// messenger frames, signs, queues, receives, verifies and deduplicates
// application messages. It needs no network, so it is unit-tested
// directly. Its methods are safe for concurrent use and never block (the
// app callbacks must not block either).
type messenger struct {
	self      string
	key       ed25519.PrivateKey // signs everything we send
	pins      *pinStore          // keys of the senders we verify against
	isMember  func(name string) bool
	onLeaving func(name string)                    // a member said it is leaving; may be nil
	onForget  func(from, name string, k PublicKey) // a member asked to forget a pin; may be nil
	onRefused func(from, reason string)            // a member refuses us; may be nil
	app       AppDelegate                          // may be nil
	log       hclog.Logger
	drops     *dropCounter
	queue     *memberlist.TransmitLimitedQueue
	seen      *dedup
	seq       atomic.Uint64
}

// appMinNodes is the least cluster size the application queue computes its
// retransmit budget for. memberlist hands a queued message to one node per
// transmit and drops it after RetransmitMult*ceil(log10(n+1)) transmits: 3
// in a cluster of 5, so each holder (the origin, then each relay) skips a
// given member with probability 1/4 and a member misses a message with
// about (1/4)^4 = 0.4% (CI saw a member of 5 miss one of 6 broadcasts in 2
// of 6 runs); nothing repairs that before the next push-pull. Counting at
// least 10 nodes gives 6 transmits below 100 hosts, (1/16)^4 in a cluster
// of 5, and leaves the budget of larger clusters as memberlist's (doubling
// it everywhere lengthened a 50-host cluster's gossip after an attach burst
// from ~20 s to over 30 s).
const appMinNodes = 10

// messengerOpts are what newMessenger needs besides its name.
type messengerOpts struct {
	key      ed25519.PrivateKey
	pins     *pinStore
	isMember func(string) bool // nil: every pinned name counts as a member
	app      AppDelegate
	log      hclog.Logger
	numNodes func() int
	mult     int
}

func newMessenger(self string, o messengerOpts) *messenger {
	if o.isMember == nil {
		o.isMember = func(string) bool { return true }
	}
	m := &messenger{
		self: self, key: o.key, pins: o.pins, isMember: o.isMember, app: o.app, log: o.log,
		drops: newDropCounter(o.log), seen: newDedup(dedupWindow),
		queue: &memberlist.TransmitLimitedQueue{NumNodes: o.numNodes, RetransmitMult: o.mult},
	}
	// Sequence numbers start at the wall clock in nanoseconds, so a restarted
	// agent does not reuse the numbers of its previous run.
	m.seq.Store(uint64(time.Now().UnixNano()))
	return m
}

func appendName(b []byte, name string) []byte {
	return append(append(b, byte(len(name))), name...)
}

// broadcast signs and queues payload for every member.
func (m *messenger) broadcast(payload []byte) error {
	if len(payload) > MaxBroadcastSize {
		return fmt.Errorf("broadcast of %d bytes is larger than the limit of %d", len(payload), MaxBroadcastSize)
	}
	m.sendBroadcast(kindBroadcast, payload)
	return nil
}

// forgetPin broadcasts that name's pin (key k) should be forgotten.
func (m *messenger) forgetPin(name string, k PublicKey) {
	m.sendBroadcast(kindForgetPin, append(appendName(nil, name), k[:]...))
}

func (m *messenger) sendBroadcast(kind byte, body []byte) {
	seq := m.seq.Add(1)
	msg := make([]byte, 0, 2+len(m.self)+8+len(body)+sigLen)
	msg = appendName(append(msg, kind), m.self)
	msg = binary.BigEndian.AppendUint64(msg, seq)
	msg = seal(m.key, append(msg, body...))
	m.seen.first(m.self, seq)
	m.enqueue(msg)
}

func (m *messenger) enqueue(msg []byte) {
	m.queue.QueueBroadcast(&appBroadcast{msg: msg})
	if m.queue.NumQueued() > maxQueued {
		m.queue.Prune(maxQueued)
	}
}

// direct frames and signs payload for SendTo(to).
func (m *messenger) direct(to string, payload []byte) []byte {
	msg := make([]byte, 0, 3+len(m.self)+len(to)+len(payload)+sigLen)
	msg = appendName(appendName(append(msg, kindDirect), m.self), to)
	return seal(m.key, append(msg, payload...))
}

// leaving frames and signs our leave notice for to.
func (m *messenger) leaving(to string) []byte {
	return seal(m.key, appendName(appendName([]byte{kindLeaving}, m.self), to))
}

// refusal frames and signs a notice telling to why we refuse it.
func (m *messenger) refusal(to, reason string) []byte {
	return seal(m.key, append(appendName(appendName([]byte{kindRefused}, m.self), to), reason...))
}

// state frames and signs our push-pull state (nil stays nil).
func (m *messenger) state(payload []byte) []byte {
	if payload == nil {
		return nil
	}
	msg := make([]byte, 0, 2+len(m.self)+len(payload)+sigLen)
	msg = appendName(append(msg, kindState), m.self)
	return seal(m.key, append(msg, payload...))
}

var errShortMsg = errors.New("truncated message")

// splitName reads a u8-length-prefixed name.
func splitName(b []byte) (string, []byte, error) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, errShortMsg
	}
	return string(b[1 : 1+int(b[0])]), b[1+int(b[0]):], nil
}

// verify checks a signed message of sender: sender must be a member with
// a pinned key that verifies the signature. It returns the frame without
// the signature, or "" and the reason (already counted and logged).
func (m *messenger) verify(sender string, msg []byte) ([]byte, bool) {
	k, ok := m.pins.key(sender)
	if !ok || !m.isMember(sender) {
		m.drops.drop(dropNonMember, sender)
		return nil, false
	}
	frame, err := unseal(k, msg)
	if err != nil {
		m.drops.drop(dropBadSig, sender)
		return nil, false
	}
	return frame, true
}

// receive handles one message from memberlist (NotifyMsg). buf may be reused
// by memberlist after the call, so everything kept is copied.
func (m *messenger) receive(buf []byte) {
	if len(buf) == 0 {
		return
	}
	switch buf[0] {
	case kindBroadcast, kindForgetPin:
		m.receiveBroadcast(buf)
	case kindDirect, kindLeaving, kindRefused:
		m.receiveDirect(buf)
	case kindBroadcastV0, kindDirectV0, kindLeavingV0:
		name, _, _ := splitName(buf[1:])
		m.drops.drop(dropUnsigned, name)
	default:
		m.drops.drop(dropUnknownKind, "")
	}
}

func (m *messenger) receiveDirect(buf []byte) {
	from, rest, err := splitName(buf[1:])
	to, rest2, err2 := splitName(rest)
	if err != nil || err2 != nil || len(rest2) < sigLen || from == "" {
		m.drops.drop(dropMalformed, from)
		return
	}
	if to != m.self {
		m.drops.drop(dropMisaddressed, from) // a replay meant for another member
		return
	}
	frame, ok := m.verify(from, buf)
	if !ok {
		return
	}
	payload := frame[len(buf)-len(rest2):]
	switch buf[0] {
	case kindLeaving:
		if len(payload) != 0 {
			m.drops.drop(dropMalformed, from)
			return
		}
		if m.onLeaving != nil {
			m.onLeaving(from)
		}
	case kindRefused:
		if m.onRefused != nil && len(payload) <= 4096 {
			m.onRefused(from, string(payload))
		}
	default:
		if m.app != nil {
			m.app.HandleDirect(from, append([]byte(nil), payload...))
		}
	}
}

func (m *messenger) receiveBroadcast(buf []byte) {
	origin, rest, err := splitName(buf[1:])
	if err != nil || len(rest) < 8+sigLen || origin == "" {
		m.drops.drop(dropMalformed, origin)
		return
	}
	if origin == m.self {
		return // our own message, relayed back
	}
	seq := binary.BigEndian.Uint64(rest)
	if m.seen.has(origin, seq) {
		return
	}
	// Verified before it is marked seen: a forged copy must not make us
	// ignore the genuine message.
	frame, ok := m.verify(origin, buf)
	if !ok || !m.seen.first(origin, seq) {
		return
	}
	// Re-broadcast once (as Serf does): memberlist only retransmits from the
	// sender, which would reach a fraction of a large cluster. The origin's
	// signed bytes go on unchanged.
	m.enqueue(append([]byte(nil), buf...))
	body := frame[len(buf)-len(rest)+8:]
	if buf[0] == kindForgetPin {
		name, k, err := splitName(body)
		if err != nil || len(k) != len(PublicKey{}) || name == "" {
			m.drops.drop(dropMalformed, origin)
			return
		}
		if m.onForget != nil {
			m.onForget(origin, name, PublicKey(k))
		}
		return
	}
	if m.app != nil {
		m.app.HandleBroadcast(origin, append([]byte(nil), body...))
	}
}

// receiveState verifies a peer's push-pull state and returns its sender
// and the application's part.
func (m *messenger) receiveState(buf []byte) (string, []byte, bool) {
	if len(buf) == 0 {
		return "", nil, false
	}
	if buf[0] != kindState {
		m.drops.drop(dropUnsigned, "")
		return "", nil, false
	}
	from, rest, err := splitName(buf[1:])
	if err != nil || len(rest) < sigLen || from == "" || from == m.self {
		m.drops.drop(dropMalformed, from)
		return "", nil, false
	}
	frame, ok := m.verify(from, buf)
	if !ok {
		return "", nil, false
	}
	return from, append([]byte(nil), frame[len(buf)-len(rest):]...), true
}
