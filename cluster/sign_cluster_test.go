package cluster

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// memberNode returns n's memberlist node as seen by from.
func memberNode(t *testing.T, from *testNode, name string) *memberlist.Node {
	t.Helper()
	for _, m := range from.ml.Members() {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("%s does not know %s", from.cfg.Name, name)
	return nil
}

// Over real memberlist: broadcasts, direct messages and push-pull state
// arrive with their signed sender; a member that sends messages in another
// member's name (it holds the gossip key, so memberlist carries them) is
// dropped and counted.
func TestSignedGossipOverMemberlist(t *testing.T) {
	a := startNode(t, testConfig(t, "a", 1))
	b := startNode(t, testConfig(t, "b", 2))
	c := startNode(t, testConfig(t, "c", 3))
	a.app.state = []byte("a-state")
	if _, err := b.Join([]string{a.addr()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join([]string{a.addr()}); err != nil {
		t.Fatal(err)
	}
	nodes := []*testNode{a, b, c}
	eventually(t, 10*time.Second, "3 nodes alive", func() bool { return allAlive(nodes) })
	b.app.mu.Lock()
	if len(b.app.from) == 0 || b.app.from[0] != "a" || string(b.app.merged[0]) != "a-state" {
		t.Errorf("b merged %q from %q", b.app.merged, b.app.from)
	}
	b.app.mu.Unlock()

	a.Broadcast([]byte("hello"))
	if err := a.SendTo("b", []byte("direct")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a's broadcast at b and c", func() bool {
		return b.app.count("a/hello") == 1 && c.app.count("a/hello") == 1
	})

	// c forges a broadcast and a direct message in a's name, signed with
	// its own key, and sends them to b over memberlist.
	target := memberNode(t, c, "b")
	fb := binary.BigEndian.AppendUint64(appendName([]byte{kindBroadcast}, "a"), 99)
	fb = seal(c.msgs.key, append(fb, "forged"...))
	fd := seal(c.msgs.key, append(appendName(appendName([]byte{kindDirect}, "a"), "b"), "forged"...))
	for _, m := range [][]byte{fb, fd} {
		if err := c.ml.SendReliable(target, m); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "b drops both forgeries", func() bool { return b.Dropped()[dropBadSig] == 2 })
	b.app.mu.Lock()
	defer b.app.mu.Unlock()
	if b.app.bcasts["a/forged"] != 0 || len(b.app.directs) != 1 || b.app.directs[0] != "a/direct" {
		t.Errorf("b's app got broadcasts %v, directs %q", b.app.bcasts, b.app.directs)
	}
}

// A host that comes back under a known name with another key (reinstalled,
// state dir lost) is refused by every member, with the way out in the
// error; `rmpeer` on one member (ForgetPin) forgets the key everywhere and
// the host joins. Keys and pins survive a restart.
func TestReinstalledHostRefusedUntilForgotten(t *testing.T) {
	nodes := startCluster(t, 3)
	a, b, old := nodes[0], nodes[1], nodes[2]
	eventually(t, 10*time.Second, "3 nodes alive", func() bool { return allAlive(nodes) })
	oldKey := old.SigningKey()
	if k, ok := b.PinnedKey("n2"); !ok || k != oldKey {
		t.Fatalf("b pinned %v %v for n2, its key is %v", k, ok, old.SigningKey())
	}
	if err := a.ForgetPin("n1"); err == nil {
		t.Error("the key of a live member was forgotten")
	}
	if err := old.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "n2 failed on n0 and n1", func() bool {
		return stateOf(a, "n2") == StateFailed && stateOf(b, "n2") == StateFailed
	})

	cfg := testConfig(t, "n2", 3) // a fresh state dir: a new identity key
	fresh := startNode(t, cfg)
	_, err := fresh.Join([]string{a.addr()})
	if err == nil || !strings.Contains(err.Error(), "pinned") || !strings.Contains(err.Error(), "flatmesh rmpeer n2") {
		t.Fatalf("joining under n2 with another key: %v", err)
	}
	if err := a.ForgetPin("n2"); err != nil {
		t.Fatal(err)
	}
	// b forgets the old key (and may pin the new one at once: the new n2
	// keeps announcing itself).
	eventually(t, 10*time.Second, "b forgets n2's old key", func() bool {
		k, ok := b.PinnedKey("n2")
		return !ok || k == fresh.SigningKey()
	})
	if _, err := fresh.Join([]string{a.addr()}); err != nil {
		t.Fatalf("joining after rmpeer: %v", err)
	}
	// memberlist keeps the dead n2 (at another address here) for
	// GossipToTheDeadTime before it takes the new one: seconds.
	eventually(t, 20*time.Second, "the new n2 alive everywhere", func() bool {
		return allAlive([]*testNode{a, b, fresh})
	})
	if k, _ := b.PinnedKey("n2"); k != fresh.SigningKey() {
		t.Error("b did not pin the new key")
	}
	fresh.Broadcast([]byte("back"))
	eventually(t, 10*time.Second, "the new n2's broadcast at b", func() bool { return b.app.count("n2/back") == 1 })

	// Restart b on its state dir: same key, accepted, and its pins
	// (saved on shutdown) are back.
	if err := b.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(b.cfg.StateDir, pinsFile))
	if err != nil || !strings.Contains(string(raw), fresh.SigningKey().String()) {
		t.Fatalf("pins.json after shutdown: %s %v", raw, err)
	}
	eventually(t, 10*time.Second, "n1 left on n0", func() bool { return stateOf(a, "n1") == StateLeft })
	b2 := startNode(t, b.cfg)
	if b2.SigningKey() != b.SigningKey() {
		t.Error("the identity key changed across a restart")
	}
	if k, ok := b2.PinnedKey("n2"); !ok || k != fresh.SigningKey() {
		t.Error("pins not reloaded")
	}
	if _, err := b2.Join([]string{a.addr()}); err != nil {
		t.Fatalf("rejoining after a restart: %v", err)
	}
}
