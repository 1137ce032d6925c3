package cluster

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// forgeBroadcast is what a member holding the gossip key (and its own
// pinned identity, m) can put on the wire in another member's name: a
// broadcast frame naming origin, signed with its own key.
func forgeBroadcast(m *messenger, origin string, seq uint64, payload []byte) []byte {
	msg := appendName([]byte{kindBroadcast}, origin)
	msg = binary.BigEndian.AppendUint64(msg, seq)
	return seal(m.key, append(msg, payload...))
}

// A member claiming another member's name as origin is dropped (and
// counted); the genuine message with the same (origin, seq) still gets
// through afterwards: the forgery did not poison the dedup window. Before
// signing, the forged origin was believed.
func TestForgedOriginDropped(t *testing.T) {
	app := newRecorder()
	recv := newTestMessenger("b", app, 4)
	mal := newTestMessenger("c", nil, 4) // a member, with its own pinned key
	a := newTestMessenger("a", nil, 4)
	_ = a.broadcast([]byte("genuine"))
	wire := a.queue.GetBroadcasts(2, 1400)[0]
	_, rest, _ := splitName(wire[1:])
	seq := binary.BigEndian.Uint64(rest)

	recv.receive(forgeBroadcast(mal, "a", seq, []byte("forged")))
	if app.total() != 0 || recv.queue.NumQueued() != 0 {
		t.Fatalf("forged origin delivered or relayed: %v", app.bcasts)
	}
	if got := recv.drops.snapshot()[dropBadSig]; got != 1 {
		t.Errorf("bad-signature count %d, want 1", got)
	}
	recv.receive(wire)
	if app.count("a/genuine") != 1 {
		t.Errorf("the genuine message after a forgery: %v", app.bcasts)
	}
	// A relay forwards the origin's bytes, so a third member verifies it.
	third := newTestMessenger("d", newRecorder(), 4)
	third.receive(recv.queue.GetBroadcasts(2, 1400)[0])
	if third.app.(*recorder).count("a/genuine") != 1 {
		t.Error("a relayed message did not verify at a third member")
	}
	// A flipped payload byte breaks the signature.
	bad := append([]byte(nil), wire...)
	bad[len(bad)-sigLen-1] ^= 1
	binary.BigEndian.PutUint64(bad[3:], seq+1)
	third.receive(bad)
	if third.app.(*recorder).total() != 1 {
		t.Error("a modified message was delivered")
	}
}

// Unsigned messages (agents before signing), senders without a pin, and
// direct messages or states claiming another sender are dropped.
func TestUnsignedUnknownAndForgedSenders(t *testing.T) {
	app := newRecorder()
	b := newTestMessenger("b", app, 3)
	b.receive(append(appendName([]byte{kindDirectV0}, "a"), "hi"...))
	stranger := newTestMessenger("zz", nil, 3) // not pinned by b
	b.receive(stranger.direct("b", []byte("hi")))
	_ = stranger.broadcast([]byte("hi"))
	b.receive(stranger.queue.GetBroadcasts(2, 1400)[0])
	mal := newTestMessenger("c", nil, 3)
	forged := seal(mal.key, append(appendName(appendName([]byte{kindDirect}, "a"), "b"), "hi"...))
	b.receive(forged)
	if len(app.directs) != 0 || app.total() != 0 {
		t.Fatalf("delivered: directs %q, broadcasts %v", app.directs, app.bcasts)
	}
	d := b.drops.snapshot()
	if d[dropUnsigned] != 1 || d[dropNonMember] != 2 || d[dropBadSig] != 1 {
		t.Errorf("drop counts %v", d)
	}
	// Push-pull state: the signer is the sender; a forged name fails.
	a := newTestMessenger("a", nil, 3)
	if from, st, ok := b.receiveState(a.state([]byte("view"))); !ok || from != "a" || string(st) != "view" {
		t.Errorf("a's state: %q %q %v", from, st, ok)
	}
	fake := seal(mal.key, append(appendName([]byte{kindState}, "a"), "view"...))
	if _, _, ok := b.receiveState(fake); ok {
		t.Error("a state signed by c in a's name was accepted")
	}
	if _, _, ok := b.receiveState([]byte("plain ipam state")); ok {
		t.Error("an unsigned state was accepted")
	}
	// A leave notice is signed and addressed too.
	var left []string
	b.onLeaving = func(n string) { left = append(left, n) }
	b.receive(a.leaving("c"))
	b.receive(seal(mal.key, appendName(appendName([]byte{kindLeaving}, "a"), "b")))
	b.receive(a.leaving("b"))
	if len(left) != 1 || left[0] != "a" {
		t.Errorf("leave notices taken: %q", left)
	}
}

func TestPinStoreRules(t *testing.T) {
	k1, k2 := publicKey(testIdentity("1")), publicKey(testIdentity("2"))
	s := newPinStore()
	now := time.Now()
	if !s.pinFirst("h1", k1, now) || s.pinFirst("h1", k2, now) {
		t.Fatal("first sight must pin once")
	}
	if got, bad := s.conflict("h1", k2); !bad || got != k1 {
		t.Errorf("conflict(h1, k2) = %v %v", got, bad)
	}
	if _, bad := s.conflict("h1", k1); bad {
		t.Error("the pinned key conflicts with itself")
	}
	if s.forget("h1", k2) {
		t.Error("forgot a pin for another key (a stale or forged forget)")
	}
	if !s.forget("h1", k1) {
		t.Error("forget with the pinned key did nothing")
	}
	if !s.pinFirst("h1", k2, now) {
		t.Error("a forgotten name is not pinned again on first sight")
	}
	s.pinFirst("old", k1, now.Add(-48*time.Hour))
	s.tidy([]string{"h1"}, now, 24*time.Hour)
	if _, ok := s.key("old"); ok {
		t.Error("a pin not seen for longer than the reap time was kept")
	}
	for i := 0; len(s.pins) < maxPins; i++ {
		s.pinFirst(strings.Repeat("x", 1+i%100)+string(rune('a'+i/100)), k1, now)
	}
	if !s.full("new") || s.full("h1") || s.pinFirst("new", k1, now) {
		t.Error("pins are not bounded")
	}

	dir := t.TempDir()
	s2 := newPinStore()
	s2.pinFirst("h1", k1, now)
	if err := s2.save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := loadPins(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := back.key("h1"); !ok || k != k1 {
		t.Errorf("reloaded pin %v %v", k, ok)
	}
	if err := os.WriteFile(filepath.Join(dir, pinsFile), []byte(`{"version":1,"pins":{"h1":{"key":"AAAA"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadPins(dir); err == nil {
		t.Error("a pin with a short key loaded")
	}
}

func TestIdentityFile(t *testing.T) {
	dir := t.TempDir()
	k, created, err := loadOrCreateIdentity(dir)
	if err != nil || !created {
		t.Fatalf("first start: %v %v", created, err)
	}
	path := filepath.Join(dir, identityFile)
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st, err)
	}
	again, created, err := loadOrCreateIdentity(dir)
	if err != nil || created || !bytes.Equal(again, k) {
		t.Errorf("restart: created=%v err=%v same=%v", created, err, bytes.Equal(again, k))
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrCreateIdentity(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: %v", err)
	}
	if err := os.WriteFile(path, []byte("not base64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrCreateIdentity(dir); err == nil {
		t.Error("a garbage key loaded")
	}
}

// The refuser pins on first sight and refuses another key for the name
// with a sentence that says what to do; a peer without a key is refused.
func TestRefuserPins(t *testing.T) {
	local := Meta{Mode: "vxlan", Cluster: "c", Fingerprint: 1}
	r, _ := testRefuser(t, "a", local)
	r.pins = newPinStore()
	peer := local
	peer.Underlay = netip.MustParseAddr("10.0.0.2")
	peer.SignKey = publicKey(testIdentity("b"))
	d := &aliveDelegate{r: r}
	if err := d.NotifyAlive(node("b", 1, 0, enc(t, peer))); err != nil {
		t.Fatalf("first sight refused: %v", err)
	}
	if k, ok := r.pins.key("b"); !ok || k != peer.SignKey {
		t.Fatal("not pinned on first sight")
	}
	other := peer
	other.SignKey = publicKey(testIdentity("impostor"))
	err := d.NotifyAlive(node("b", 1, 0, enc(t, other)))
	if err == nil || !strings.Contains(err.Error(), "flatmesh rmpeer b") || !strings.Contains(err.Error(), "pinned") {
		t.Errorf("another key for b: %v", err)
	}
	if k, _ := r.pins.key("b"); k != peer.SignKey {
		t.Error("the pin changed")
	}
	unsigned := peer
	unsigned.SignKey = PublicKey{}
	if err := d.NotifyAlive(node("c", 1, 0, enc(t, unsigned))); err == nil || !strings.Contains(err.Error(), "does not sign") {
		t.Errorf("unsigned peer: %v", err)
	}
}
