package cluster

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

func testRefuser(t *testing.T, self string, local Meta) (*refuser, *memberTable) {
	t.Helper()
	tab := newMemberTable(self, 0, nil)
	tab.set(self, netip.MustParseAddr("127.0.0.1"), 7000, StateAlive, local)
	return newRefuser(self, func() Meta { return local }, tab, hclog.NewNullLogger()), tab
}

func enc(t *testing.T, m Meta) []byte {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckPeerRules(t *testing.T) {
	local := Meta{Mode: "vxlan", Cluster: "red", Fingerprint: 1, Underlay: netip.MustParseAddr("10.0.2.15")}
	r, tab := testRefuser(t, "a", local)
	ok := Meta{Mode: "vxlan", Cluster: "red", Fingerprint: 1, Underlay: netip.MustParseAddr("192.0.2.2")}
	tab.set("c", netip.MustParseAddr("127.0.0.1"), 7002, StateAlive, Meta{Cluster: "red", Fingerprint: 1, Underlay: netip.MustParseAddr("192.0.2.3")})
	tab.set("dead", netip.MustParseAddr("127.0.0.1"), 7003, StateFailed, Meta{Cluster: "red", Fingerprint: 1, Underlay: netip.MustParseAddr("192.0.2.4")})

	withCluster := ok
	withCluster.Cluster = "blue"
	withFP := ok
	withFP.Fingerprint, withFP.Mode = 2, "flat"
	dupSelf := ok
	dupSelf.Underlay = local.Underlay
	dupOther := ok
	dupOther.Underlay = netip.MustParseAddr("192.0.2.3")
	reuseDead := ok
	reuseDead.Underlay = netip.MustParseAddr("192.0.2.4")

	cases := []struct {
		name, peer string
		raw        []byte
		want       string // "" = accepted
	}{
		{"ok", "b", enc(t, ok), ""},
		{"self", "a", []byte{0xff}, ""},
		{"cluster", "x", enc(t, withCluster), `peer "x" is in cluster "blue", this agent is in "red"`},
		{"fingerprint", "x", enc(t, withFP), `peer "x" has cluster settings fingerprint 0000000000000002, this agent has 0000000000000001 (it runs mode "flat", this agent runs "vxlan")`},
		{"undecodable", "x", []byte{9, 9}, `peer "x" sent node metadata this agent cannot read`},
		{"empty meta", "x", nil, `peer "x" sent node metadata this agent cannot read`},
		{"dup self", "b", enc(t, dupSelf), `node "b" advertises underlay 10.0.2.15, already used by live member "a"`},
		{"dup other", "b", enc(t, dupOther), `node "b" advertises underlay 192.0.2.3, already used by live member "c"`},
		{"same name same underlay", "c", enc(t, dupOther), ""},
		{"underlay of a failed member", "b", enc(t, reuseDead), ""},
	}
	for _, tc := range cases {
		err := r.checkPeer(tc.peer, tc.raw)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		case err != nil && err.Peer != tc.peer:
			t.Errorf("%s: Peer = %q", tc.name, err.Peer)
		}
	}
}

func node(name string, port uint16, st memberlist.NodeStateType, meta []byte) *memberlist.Node {
	return &memberlist.Node{Name: name, Addr: net.ParseIP("127.0.0.1"), Port: port, State: st, Meta: meta}
}

func TestMergeDelegate(t *testing.T) {
	local := Meta{Cluster: "red", Underlay: netip.MustParseAddr("10.0.2.15")}
	r, _ := testRefuser(t, "b", local)
	app := newRecorder()
	md := &mergeDelegate{r: r, app: app}
	good := enc(t, Meta{Cluster: "red", Underlay: netip.MustParseAddr("192.0.2.1")})
	blue := enc(t, Meta{Cluster: "blue"})

	// Dead members of another cluster do not matter; self is skipped.
	peers := []*memberlist.Node{node("a", 7001, memberlist.StateAlive, good),
		node("old", 7009, memberlist.StateDead, blue), node("b", 7000, memberlist.StateAlive, good)}
	if err := md.NotifyMerge(peers); err != nil {
		t.Fatalf("merge refused: %v", err)
	}
	if len(app.merges) != 1 || len(app.merges[0]) != 2 || app.merges[0][0].Name != "a" || app.merges[0][1].State != StateFailed {
		t.Errorf("CheckMerge got %+v", app.merges)
	}

	err := md.NotifyMerge([]*memberlist.Node{node("x", 7001, memberlist.StateSuspect, blue)})
	if err == nil || !strings.Contains(err.Error(), `peer "x" is in cluster "blue", this agent is in "red"`) {
		t.Errorf("suspect member of another cluster: %v", err)
	}

	app.refuse = errors.New("IPAM seeds differ")
	if err := md.NotifyMerge(peers); err == nil || !strings.Contains(err.Error(), "IPAM seeds differ") {
		t.Errorf("application refusal lost: %v", err)
	}
	if r.find("the application refused the merge: IPAM seeds differ") == nil {
		t.Error("application refusal not remembered for Join")
	}
}

func TestMergeDuplicateUnderlayWording(t *testing.T) {
	local := Meta{Cluster: "red", Underlay: netip.MustParseAddr("10.0.2.15")}
	r, _ := testRefuser(t, "b", local)
	md := &mergeDelegate{r: r}
	peers := []*memberlist.Node{node("a", 7001, memberlist.StateAlive, enc(t, local))}
	// Someone joins us: they are the newcomer.
	err := md.NotifyMerge(peers)
	if err == nil || !strings.Contains(err.Error(), `node "a" advertises underlay 10.0.2.15, already used by live member "b"`) {
		t.Errorf("incoming: %v", err)
	}
	// We join them: we are the newcomer.
	r.joining.Add(1)
	err = md.NotifyMerge(peers)
	if err == nil || !strings.Contains(err.Error(), `node "b" advertises underlay 10.0.2.15, already used by live member "a"`) {
		t.Errorf("outgoing: %v", err)
	}
}

func TestMergeRefusesNameClash(t *testing.T) {
	r, _ := testRefuser(t, "a", Meta{})
	md := &mergeDelegate{r: r}
	same := []*memberlist.Node{node("a", 7000, memberlist.StateAlive, nil)}
	if err := md.NotifyMerge(same); err != nil {
		t.Errorf("our own earlier life refused: %v", err)
	}
	other := []*memberlist.Node{node("a", 7999, memberlist.StateAlive, nil)}
	if err := md.NotifyMerge(other); err == nil || !strings.Contains(err.Error(), "node names must be unique") {
		t.Errorf("name clash: %v", err)
	}
}

func TestAliveDelegate(t *testing.T) {
	r, _ := testRefuser(t, "a", Meta{Cluster: "red"})
	ad := &aliveDelegate{r: r}
	if err := ad.NotifyAlive(node("b", 1, 0, enc(t, Meta{Cluster: "red"}))); err != nil {
		t.Error(err)
	}
	if err := ad.NotifyAlive(node("b", 1, 0, enc(t, Meta{Cluster: "blue"}))); err == nil {
		t.Error("other cluster accepted from gossip")
	}
}

func TestRefusalLogRateLimited(t *testing.T) {
	var out strings.Builder
	log := hclog.New(&hclog.LoggerOptions{Output: &out})
	r := newRefuser("a", func() Meta { return Meta{} }, newMemberTable("a", 0, nil), log)
	e := &RefusedError{Peer: "x", Reason: "same reason"}
	for range 5 {
		r.refused(e, "gossip")
	}
	if n := strings.Count(out.String(), "refusing peer"); n != 1 {
		t.Errorf("logged %d times, want 1:\n%s", n, out.String())
	}
}
