package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestClusterFormsBroadcastsAndSends(t *testing.T) {
	start := time.Now()
	nodes := startCluster(t, 5)
	eventually(t, 10*time.Second, "5 nodes to see each other alive", func() bool { return allAlive(nodes) })
	t.Logf("5 nodes converged %v after the first started", time.Since(start).Round(time.Millisecond))

	for _, n := range nodes {
		ms := n.Members()
		for i, p := range ms {
			want := fmt.Sprintf("n%d", i)
			if p.Name != want || p.State != StateAlive || p.Meta.Cluster != "test" ||
				p.Meta.Underlay != netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}) || p.Addr != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("%s sees member %d as %+v", n.cfg.Name, i, p)
			}
		}
	}

	// Broadcasts from two origins reach every other member exactly once,
	// even after the sender's and the relays' retransmissions are done.
	for i := range 5 {
		nodes[1].Broadcast(fmt.Appendf(nil, "b%d", i))
	}
	nodes[3].Broadcast([]byte("from3"))
	for i, n := range nodes {
		wantTotal := 0 // own messages are not delivered to their sender
		if i != 1 {
			wantTotal += 5
		}
		if i != 3 {
			wantTotal++
		}
		eventually(t, 5*time.Second, fmt.Sprintf("n%d to get %d broadcasts", i, wantTotal), func() bool { return n.app.total() == wantTotal })
	}
	time.Sleep(1500 * time.Millisecond) // let every retransmission run out
	for i, n := range nodes {
		for key, c := range n.app.bcastsSnapshot() {
			if c != 1 {
				t.Errorf("n%d got %q %d times", i, key, c)
			}
		}
		if i != 1 && n.app.count("n1/b4") != 1 {
			t.Errorf("n%d missed n1/b4", i)
		}
	}

	// Direct messages.
	if err := nodes[0].SendTo("n4", []byte("psst")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the direct message", func() bool {
		nodes[4].app.mu.Lock()
		defer nodes[4].app.mu.Unlock()
		return len(nodes[4].app.directs) == 1 && nodes[4].app.directs[0] == "n0/psst"
	})
	if err := nodes[0].SendTo("nobody", nil); err == nil {
		t.Error("SendTo an unknown member succeeded")
	}
	if nodes[0].changes.Load() == 0 {
		t.Error("OnChange never called")
	}
}

func (r *recorder) bcastsSnapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.bcasts))
	for k, v := range r.bcasts {
		out[k] = v
	}
	return out
}

func TestPushPullStateReachesApp(t *testing.T) {
	a := startNode(t, testConfig(t, "a", 1))
	b := startNode(t, testConfig(t, "b", 2))
	a.app.state = []byte("a-state")
	if _, err := b.Join([]string{a.addr()}); err != nil {
		t.Fatal(err)
	}
	b.app.mu.Lock()
	defer b.app.mu.Unlock()
	if len(b.app.merged) == 0 || !bytes.Equal(b.app.merged[0], []byte("a-state")) {
		t.Errorf("b merged %q", b.app.merged)
	}
	if len(b.app.merges) != 1 || len(b.app.merges[0]) != 1 || b.app.merges[0][0].Name != "a" {
		t.Errorf("b's CheckMerge saw %+v", b.app.merges)
	}
}

func TestMetaUpdatePropagates(t *testing.T) {
	nodes := startCluster(t, 3)
	eventually(t, 10*time.Second, "3 nodes alive", func() bool { return allAlive(nodes) })
	before := nodes[0].changes.Load()
	mac := []byte{2, 0, 0, 0, 0, 9}
	if err := nodes[2].UpdateMeta(func(m *Meta) { m.IPAMSeed, m.VTEPMAC = 77, mac }); err != nil {
		t.Fatal(err)
	}
	if got := nodes[2].Self().Meta; got.IPAMSeed != 77 {
		t.Errorf("Self meta %+v", got)
	}
	eventually(t, 5*time.Second, "the meta update everywhere", func() bool {
		for _, n := range nodes[:2] {
			for _, p := range n.Members() {
				if p.Name == "n2" && (p.Meta.IPAMSeed != 77 || !bytes.Equal(p.Meta.VTEPMAC, mac)) {
					return false
				}
			}
		}
		return true
	})
	eventually(t, 2*time.Second, "OnChange after the update", func() bool { return nodes[0].changes.Load() > before })
	if err := nodes[2].UpdateMeta(func(m *Meta) { m.Cluster = strings.Repeat("x", 100) }); err == nil {
		t.Error("oversized meta accepted")
	}
	if nodes[2].Self().Meta.Cluster != "test" {
		t.Error("a rejected update changed the meta")
	}
}

func TestLeaveAndFailure(t *testing.T) {
	nodes := startCluster(t, 4)
	eventually(t, 10*time.Second, "4 nodes alive", func() bool { return allAlive(nodes) })

	if err := nodes[3].Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if nodes[3].Self().State != StateLeft {
		t.Error("Self not left after Leave")
	}
	eventually(t, 5*time.Second, "n3 left everywhere", func() bool {
		return stateOf(nodes[0], "n3") == StateLeft && stateOf(nodes[1], "n3") == StateLeft && stateOf(nodes[2], "n3") == StateLeft
	})
	if err := nodes[3].Leave(time.Second); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if _, err := nodes[3].Join([]string{nodes[0].addr()}); err == nil {
		t.Error("Join after Leave succeeded")
	}

	killed := time.Now()
	if err := nodes[2].Shutdown(); err != nil { // no leave: like SIGKILL
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "n2 failed on n0 and n1", func() bool {
		return stateOf(nodes[0], "n2") == StateFailed && stateOf(nodes[1], "n2") == StateFailed
	})
	t.Logf("a stopped node was marked failed after %v", time.Since(killed).Round(time.Millisecond))
	if stateOf(nodes[0], "n3") != StateLeft {
		t.Error("n3 no longer left")
	}
	if got := len(nodes[0].AlivePeers()); got != 2 {
		t.Errorf("n0 has %d alive peers, want 2", got)
	}
	if err := nodes[2].Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := nodes[2].Leave(time.Second); err == nil {
		t.Error("Leave after Shutdown succeeded")
	}
}

func TestJoinRefusals(t *testing.T) {
	nodes := startCluster(t, 2)
	eventually(t, 10*time.Second, "2 nodes alive", func() bool { return allAlive(nodes) })
	target := nodes[0].addr()

	blue := testConfig(t, "x", 10)
	blue.Meta.Cluster = "blue"
	fp := testConfig(t, "y", 11)
	fp.Meta.Fingerprint = 2
	dup := testConfig(t, "d", 1) // n0's underlay 192.0.2.1
	otherKey := testConfig(t, "k", 12)
	otherKey.Keys = [][]byte{bytes.Repeat([]byte{1}, 32)}
	plain := testConfig(t, "p", 13)
	plain.Keys, plain.Insecure = nil, true

	cases := []struct {
		cfg            Config
		want           string
		refused, retry bool
	}{
		// The first member of the other side's list is named: n0 or n1.
		{blue, `" is in cluster "test", this agent is in "blue"`, true, false},
		{fp, `" has cluster settings fingerprint 0000000000000001, this agent has 0000000000000002`, true, false},
		{dup, `node "d" advertises underlay 192.0.2.1, already used by live member "n0"`, true, true},
		{otherKey, "gossip key rejected (is --key-file the same on every host", false, false},
		{plain, "gossip key rejected", false, false},
	}
	for _, tc := range cases {
		n := startNode(t, tc.cfg)
		_, err := n.Join([]string{target})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "joining "+target) {
			t.Errorf("%s: err = %v, want %q", tc.cfg.Name, err, tc.want)
			continue
		}
		var re *RefusedError
		if errors.As(err, &re) != tc.refused || errors.Is(err, ErrGossipKey) == tc.refused {
			t.Errorf("%s: error type: %#v", tc.cfg.Name, err)
		}
		t.Logf("%s: %v", tc.cfg.Name, err)
		// JoinRetry gives up at once on a definitive answer, and keeps
		// trying on a conflict that may resolve itself.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if tc.retry {
			ctx, cancel = context.WithTimeout(context.Background(), 600*time.Millisecond)
		}
		err = n.JoinRetry(ctx, []string{target})
		if tc.retry != (ctx.Err() != nil) || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: JoinRetry = %v (context: %v)", tc.cfg.Name, err, ctx.Err())
		}
		cancel()
		if len(n.AlivePeers()) != 1 {
			t.Errorf("%s: joined anyway: %+v", tc.cfg.Name, n.AlivePeers())
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, n := range nodes {
		if len(n.Members()) != 2 {
			t.Errorf("%s let a refused node in: %+v", n.cfg.Name, n.Members())
		}
	}
	logs := nodes[0].logs.String()
	if !strings.Contains(logs, "refusing peer") {
		t.Error("the refusing side logged nothing")
	}
	// memberlist's own lines arrive through hclog at their level.
	if !strings.Contains(logs, "[ERROR] n0.memberlist: Failed push/pull merge") || strings.Contains(logs, "memberlist: memberlist") {
		t.Errorf("memberlist log lines not routed as expected:\n%s", logs)
	}
}

func TestGossipRefusesDuplicateUnderlay(t *testing.T) {
	nodes := startCluster(t, 3)
	eventually(t, 10*time.Second, "3 nodes alive", func() bool { return allAlive(nodes) })
	// n2 switches to n0's underlay: the others ignore that alive message.
	if err := nodes[2].UpdateMeta(func(m *Meta) { m.Underlay = netip.MustParseAddr("192.0.2.1") }); err != nil {
		t.Fatal(err)
	}
	want := `node "n2" advertises underlay 192.0.2.1, already used by live member "n0"`
	eventually(t, 5*time.Second, "n0 and n1 to refuse the update", func() bool {
		return strings.Contains(nodes[0].logs.String(), want) && strings.Contains(nodes[1].logs.String(), want)
	})
	for _, n := range nodes[:2] {
		for _, p := range n.Members() {
			if p.Name == "n2" && p.Meta.Underlay != netip.MustParseAddr("192.0.2.3") {
				t.Errorf("%s took the duplicate underlay: %+v", n.cfg.Name, p)
			}
		}
	}
}

func TestJoinRetryUnreachable(t *testing.T) {
	n := startNode(t, testConfig(t, "a", 1))
	dead := startNode(t, testConfig(t, "gone", 2))
	addr := dead.addr()
	_ = dead.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	err := n.JoinRetry(ctx, []string{addr})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), addr) {
		t.Errorf("JoinRetry = %v", err)
	}
	if _, err := n.Join([]string{"host:x"}); !errors.Is(err, errBadAddress) {
		t.Errorf("bad address: %v", err)
	}
}

func TestPersistAndRejoin(t *testing.T) {
	nodes := startCluster(t, 3)
	eventually(t, 10*time.Second, "3 nodes alive", func() bool { return allAlive(nodes) })
	c := nodes[2]
	eventually(t, 5*time.Second, "n2's peers.json", func() bool {
		saved, err := loadPeers(c.cfg.StateDir)
		return err == nil && len(saved) == 2 && saved[0].Name == "n0" && saved[1].Name == "n1"
	})
	saved, _ := loadPeers(c.cfg.StateDir)
	if saved[0].Addr != netip.MustParseAddr("127.0.0.1") || saved[0].Port != nodes[0].Self().Port {
		t.Errorf("saved %+v", saved[0])
	}
	port := c.Self().Port
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}

	// Restart n2 on the same address and state dir, without keys: the
	// persisted keyring and member list bring it back.
	cfg := c.cfg
	cfg.Bind = netip.AddrPortFrom(cfg.Bind.Addr(), port)
	cfg.Keys = nil
	again := startNode(t, cfg)
	if !again.Encrypted() {
		t.Error("the restarted node did not load the persisted keyring")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := again.RejoinPersisted(ctx); err != nil {
		t.Fatal(err)
	}
	all := []*testNode{nodes[0], nodes[1], again}
	eventually(t, 10*time.Second, "the restarted node alive everywhere", func() bool { return allAlive(all) })

	// A node with no saved members has nothing to rejoin.
	lone := startNode(t, testConfig(t, "lone", 9))
	if err := lone.RejoinPersisted(ctx); err != nil {
		t.Errorf("RejoinPersisted with nothing saved: %v", err)
	}
}

func TestNewValidation(t *testing.T) {
	base := testConfig(t, "a", 1)
	cases := map[string]struct {
		mod  func(*Config)
		want string
	}{
		"unspecified bind": {func(c *Config) { c.Bind = netip.MustParseAddrPort("0.0.0.0:0") }, "--advertise"},
		"no key":           {func(c *Config) { c.Keys = nil }, "no gossip key: pass --key-file"},
		"bad key":          {func(c *Config) { c.Keys = [][]byte{{1, 2, 3}} }, "gossip key 1 is 3 bytes"},
		"timing":           {func(c *Config) { c.Timing = "wan" }, `unknown gossip timing "wan"`},
		"name":             {func(c *Config) { c.Name = "" }, "node name is empty"},
		"meta":             {func(c *Config) { c.Meta.Mode = strings.Repeat("m", 40) }, "mode"},
	}
	for name, tc := range cases {
		cfg := base
		cfg.StateDir = t.TempDir()
		tc.mod(&cfg)
		if c, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			if c != nil {
				_ = c.Shutdown()
			}
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
	// An unspecified bind with an advertise address is fine.
	cfg := base
	cfg.Bind = netip.MustParseAddrPort("0.0.0.0:0")
	cfg.Advertise = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Keys, cfg.Insecure = nil, true
	n := startNode(t, cfg)
	if n.Encrypted() {
		t.Error("insecure node reports encryption")
	}
	if self := n.Self(); self.Addr != netip.MustParseAddr("127.0.0.1") || self.Port == 0 {
		t.Errorf("advertised %v:%d", self.Addr, self.Port)
	}
}

func TestFailedAddrs(t *testing.T) {
	ms := []Peer{
		{Name: "a", Addr: netip.MustParseAddr("192.0.2.1"), Port: 7496, State: StateAlive},
		{Name: "b", Addr: netip.MustParseAddr("192.0.2.2"), Port: 7496, State: StateFailed},
		{Name: "c", Addr: netip.MustParseAddr("192.0.2.3"), Port: 7000, State: StateLeft},
		{Name: "self", Addr: netip.MustParseAddr("192.0.2.4"), Port: 7496, State: StateFailed},
	}
	got := failedAddrs(ms, "self")
	if len(got) != 1 || got[0].String() != "192.0.2.2:7496" {
		t.Fatalf("failedAddrs = %v, want only b's address (not left members, not self)", got)
	}
}
