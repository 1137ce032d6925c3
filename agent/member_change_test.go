package agent

import (
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/cluster"
)

// kicked reports whether the reconcile loop was poked within wait.
func kicked(a *Agent, wait time.Duration) bool {
	select {
	case <-a.kick:
		return true
	case <-time.After(wait):
		return false
	}
}

func TestMemberChangeOfDigestOnlyWakesNoPass(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	a := n.a
	a.clRef.Store(a.cl)
	a.membersChanged()
	if !kicked(a, time.Second) {
		t.Fatal("the first member change woke no pass")
	}
	for kicked(a, 100*time.Millisecond) { // the cluster's own start events
	}
	a.membersChanged()
	if kicked(a, 50*time.Millisecond) {
		t.Fatal("unchanged members woke a pass")
	}
	if err := a.cl.UpdateMeta(func(m *cluster.Meta) { m.IPAMDigest = 0x1234 }); err != nil {
		t.Fatal(err)
	}
	readiness := a.changed.wait() // what awaitPeersAgree waits on
	a.membersChanged()
	if kicked(a, 200*time.Millisecond) {
		t.Fatal("a change of the IPAM digest alone woke a pass")
	}
	select {
	case <-readiness:
	default:
		t.Fatal("a change of the IPAM digest did not wake attach readiness (awaitPeersAgree waits for it)")
	}
	if got := a.memberWatch.skippedCount(); got < 2 {
		t.Fatalf("skipped %d changes, want at least 2", got)
	}
	if err := a.cl.UpdateMeta(func(m *cluster.Meta) { m.IPAMUsed = !m.IPAMUsed }); err != nil {
		t.Fatal(err)
	}
	a.membersChanged()
	if !kicked(a, time.Second) {
		t.Fatal("a change of the IPAM used flag woke no pass")
	}
}

func TestMembersKeyIgnoresOnlyTheDigest(t *testing.T) {
	base := []cluster.Peer{{Name: "h1", State: cluster.StateAlive, Port: 7946,
		Meta: cluster.Meta{Mode: "vxlan", Cluster: "c", IPAMSeed: 7, IPAMDigest: 1}}}
	key := string(membersKey(base))
	mutate := map[string]func(p *cluster.Peer){
		"state":     func(p *cluster.Peer) { p.State = cluster.StateSuspect },
		"port":      func(p *cluster.Peer) { p.Port = 7947 },
		"name":      func(p *cluster.Peer) { p.Name = "h2" },
		"seed":      func(p *cluster.Peer) { p.Meta.IPAMSeed = 8 },
		"leaving":   func(p *cluster.Peer) { p.Meta.Leaving = true },
		"wg key":    func(p *cluster.Peer) { p.Meta.WGPublicKey[0] = 1 },
		"sign key":  func(p *cluster.Peer) { p.Meta.SignKey[0] = 1 },
		"direct":    func(p *cluster.Peer) { p.Meta.DirectRouting = true },
		"a member":  nil,
		"no digest": func(p *cluster.Peer) { p.Meta.IPAMDigest = 99 },
	}
	for what, f := range mutate {
		peers := append([]cluster.Peer(nil), base...)
		if f == nil {
			peers = append(peers, cluster.Peer{Name: "h3"})
		} else {
			f(&peers[0])
		}
		same := string(membersKey(peers)) == key
		if want := what == "no digest"; same != want {
			t.Errorf("%s: same key %v, want %v", what, same, want)
		}
	}
}

func TestSettleFollowsTheLastPass(t *testing.T) {
	for _, c := range []struct{ last, want time.Duration }{
		{0, settleMin},
		{5 * time.Millisecond, settleMin},
		{80 * time.Millisecond, 80 * time.Millisecond},
		{3 * time.Second, settleMax},
	} {
		if got := settleAfter(c.last); got != c.want {
			t.Errorf("after a pass of %s: settle %s, want %s", c.last, got, c.want)
		}
	}
}
