package cluster

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// testKey is the gossip key the in-process test clusters share.
var testKey = bytes.Repeat([]byte{0x42}, 32)

// syncBuf is a log sink safe for concurrent writers.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testNode struct {
	*Cluster
	app     *recorder
	cfg     Config
	logs    *syncBuf
	changes atomic.Int64
}

// addr is the node's gossip address as a join string.
func (n *testNode) addr() string {
	s := n.Self()
	return netip.AddrPortFrom(s.Addr, s.Port).String()
}

// testConfig is a loopback node of cluster "test" with underlay 192.0.2.<i>.
func testConfig(t *testing.T, name string, i int) Config {
	return Config{
		Name: name,
		Bind: netip.MustParseAddrPort("127.0.0.1:0"),
		Meta: Meta{Mode: "vxlan", Cluster: "test", Fingerprint: 1,
			Underlay: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})},
		Keys:     [][]byte{testKey},
		StateDir: t.TempDir(),
		Timing:   TimingLocal,
	}
}

// startNode creates a node; it is shut down when the test ends, and its log
// (warnings and up) is printed if the test failed.
func startNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	n := &testNode{app: newRecorder(), logs: &syncBuf{}}
	cfg.App = n.app
	cfg.OnChange = func() { n.changes.Add(1) }
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: cfg.Name, Output: n.logs, Level: hclog.Info})
	n.cfg = cfg
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("starting %s: %v", cfg.Name, err)
	}
	n.Cluster = c
	t.Cleanup(func() {
		_ = c.Shutdown()
		if t.Failed() {
			t.Logf("log of %s:\n%s", cfg.Name, n.logs)
		}
	})
	return n
}

// startCluster starts n nodes "n0".."n<n-1>"; node i joins node i-1, so
// the later ones learn the earlier ones by gossip.
func startCluster(t *testing.T, n int) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := range n {
		nodes[i] = startNode(t, testConfig(t, fmt.Sprintf("n%d", i), i+1))
		if i > 0 {
			if _, err := nodes[i].Join([]string{nodes[i-1].addr()}); err != nil {
				t.Fatalf("n%d joining: %v", i, err)
			}
		}
	}
	return nodes
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stateOf returns name's state in n's member list ("" if unknown).
func stateOf(n *testNode, name string) State {
	for _, p := range n.Members() {
		if p.Name == name {
			return p.State
		}
	}
	return ""
}

// allAlive reports whether every node lists every node alive.
func allAlive(nodes []*testNode) bool {
	for _, n := range nodes {
		if len(n.AlivePeers()) != len(nodes) {
			return false
		}
	}
	return true
}
