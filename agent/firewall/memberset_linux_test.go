package firewall

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// TestFmwMemberSetLifecycle: the member set is made with the rules that
// name it and holds exactly the members through joins and departures; a
// set changed by hand shows in Check and the next Ensure repairs it; Remove
// and RemoveNoTrack destroy it whichever runs first; a set of another
// program with the same name is refused with a message that names it.
func TestFmwMemberSetLifecycle(t *testing.T) {
	kerneltest.RequireCommands(t, "ipset")
	l, o, member, stranger := guardLab(t, true)
	ns := kerneltest.NetnsPath(l.router)
	members := func() []netip.Addr {
		t.Helper()
		have, exists, err := readMemberSet(ns, IPv4)
		if err != nil || !exists {
			t.Fatalf("member set: exists %v, %v", exists, err)
		}
		return have
	}
	if got := members(); !slices.Equal(got, []netip.Addr{member}) {
		t.Fatalf("set holds %v, want %s", got, member)
	}
	// 50 members (a cluster of 51): still one rule per port.
	o.Members = []netip.Addr{member}
	for i := 1; i <= 49; i++ {
		o.Members = append(o.Members, netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}))
	}
	agentEnsure(t, o)
	if got := members(); len(got) != 50 {
		t.Fatalf("set holds %d addresses, want 50", len(got))
	}
	save := iptablesSave(t, l.router, "iptables-save")
	if n := strings.Count(save, "--match-set "+MemberSet4+" src"); n != 1 {
		t.Fatalf("%d rules name the member set, want 1:\n%s", n, save)
	}
	// A departure, then a set edited by hand (a member deleted, a stranger
	// added): Check names both, Ensure puts the members back.
	o.Members = o.Members[:10]
	agentEnsure(t, o)
	if got := members(); len(got) != 10 {
		t.Fatalf("after departures the set holds %d addresses, want 10", len(got))
	}
	kerneltest.NsRun(t, l.router, "ipset", "del", MemberSet4, member.String())
	kerneltest.NsRun(t, l.router, "ipset", "add", MemberSet4, stranger.String())
	problems, err := Check(o)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(problems, "\n")
	if !strings.Contains(joined, "lacks members ["+member.String()+"]") || !strings.Contains(joined, "holds non-members ["+stranger.String()+"]") {
		t.Fatalf("Check after a hand edit: %q", problems)
	}
	agentEnsure(t, o)
	if got := members(); !slices.Contains(got, member) || slices.Contains(got, stranger) {
		t.Fatalf("Ensure did not repair the set: %v", got)
	}
	if p, err := Check(o); err != nil || len(p) != 0 {
		t.Fatalf("Check after repair: %q, %v", p, err)
	}
	// RemoveNoTrack first: the raw guard goes, the set stays while
	// nothing else names it... then Remove destroys it.
	if err := RemoveNoTrack(o); err != nil {
		t.Fatal(err)
	}
	if err := Remove(o); err != nil {
		t.Fatal(err)
	}
	if _, exists, err := readMemberSet(ns, IPv4); err != nil || exists {
		t.Fatalf("after Remove the set exists %v (%v)", exists, err)
	}
	// Another program's set under our name.
	kerneltest.NsRun(t, l.router, "ipset", "create", MemberSet4, "hash:net")
	t.Cleanup(func() { _ = destroyMemberSets(ns) })
	err = EnsureAll(o, 4789)
	if err == nil || !strings.Contains(err.Error(), "another program uses the name") {
		t.Fatalf("EnsureAll over a foreign set: %v", err)
	}
}
