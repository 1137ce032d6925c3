package e2e

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// cniDelRounds is how many containers the DEL figure times.
const cniDelRounds = 30

// TestRootCNIDel drives CNI DEL through cnitool on a one-host VXLAN lab:
// DEL then ADD of the same container ID at once (the old pair is still
// being deleted in the background when ADD comes), DEL of a container whose
// namespace is already gone, and the DEL latency figure: cnitool DEL of an
// attached container against cnitool DEL of one already deleted (the same
// processes, nothing for the agent to do), side by side.
func TestRootCNIDel(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 1})
	r := newCNIRig(t, l)
	t.Run("del then add at once", func(t *testing.T) { testCNIDelThenAdd(t, r) })
	t.Run("del then add under another container id", func(t *testing.T) { testCNIDelThenAddOtherID(t, r) })
	t.Run("del of a gone container", func(t *testing.T) { testCNIDelGone(t, r) })
	t.Run("del latency", func(t *testing.T) { testCNIDelLatency(t, r) })
}

func cniDel(t *testing.T, r *cniRig, net, ns string) time.Duration {
	t.Helper()
	start := time.Now()
	out, err := r.cnitoolOn("h1", "del", net, kerneltest.NetnsPath(ns), "")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("cnitool del %s %s: %v\n%s", net, ns, err, out)
	}
	return took
}

func testCNIDelThenAdd(t *testing.T, r *cniRig) {
	used := mustUsed(t, r.l, "h1")
	ns, peer := kerneltest.Netns(t, "cd"), kerneltest.Netns(t, "cd")
	_, peerIP := cniAdd(t, r, "h1", "fmgc", peer, "")
	t.Cleanup(func() { _, _ = r.cnitoolOn("h1", "del", "fmgc", kerneltest.NetnsPath(peer), "") })
	_, ip := cniAdd(t, r, "h1", "fmgc", ns, "")
	for i := range 5 {
		cniDel(t, r, "fmgc", ns)
		_, again := cniAdd(t, r, "h1", "fmgc", ns, "") // same container ID: cnitool derives it from the path
		if again == ip {
			t.Errorf("round %d: ADD after DEL got the released address %s back (cool-down)", i, ip)
		}
		ip = again
		eth0 := kerneltest.Run(t, "ip", "-n", ns, "addr", "show", "eth0")
		if !strings.Contains(eth0, "inet "+ip.String()) || !strings.Contains(eth0, "state UP") {
			t.Fatalf("round %d: eth0 after DEL+ADD:\n%s", i, eth0)
		}
		kerneltest.NsRun(t, ns, "ping", "-c", "1", "-W", "2", peerIP.Addr().String())
		if n := mustUsed(t, r.l, "h1"); n != used+2 {
			t.Fatalf("round %d: h1 holds %d addresses, want %d", i, n, used+2)
		}
	}
	if out, err := r.cnitoolOn("h1", "check", "fmgc", kerneltest.NetnsPath(ns), ""); err != nil {
		t.Errorf("CHECK after the last DEL+ADD: %v\n%s", err, out)
	}
	cniDel(t, r, "fmgc", ns)
	if out, _ := kerneltest.Output("ip", "-n", ns, "link", "show", "eth0"); !strings.Contains(out, "does not exist") {
		t.Errorf("eth0 still in the container after DEL: %s", out)
	}
	id := cnitoolID(kerneltest.NetnsPath(ns))
	for _, c := range containersOf(t, r.l, "h1") {
		if strings.HasSuffix(c.ID, id) {
			t.Errorf("h1 still lists %s after DEL: %+v", id, c)
		}
	}
}

// testCNIDelThenAddOtherID: one namespace under two paths (a bind mount),
// so cnitool gives it two container IDs; DEL under one and ADD under the
// other at once, both ways, while the old pair's eth0 may still be being
// deleted in the background.
func testCNIDelThenAddOtherID(t *testing.T, r *cniRig) {
	used := mustUsed(t, r.l, "h1")
	ns := kerneltest.Netns(t, "cd")
	alias := ns + "b"
	aliasPath := kerneltest.NetnsPath(alias)
	if err := os.WriteFile(aliasPath, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("umount", aliasPath).Run()
		_ = os.Remove(aliasPath)
	})
	kerneltest.Run(t, "mount", "--bind", kerneltest.NetnsPath(ns), aliasPath)
	names := []string{ns, alias}
	cniAdd(t, r, "h1", "fmgc", names[0], "")
	for i := range 6 {
		from, to := names[i%2], names[(i+1)%2]
		cniDel(t, r, "fmgc", from)
		_, ip := cniAdd(t, r, "h1", "fmgc", to, "")
		if eth0 := kerneltest.Run(t, "ip", "-n", ns, "addr", "show", "eth0"); !strings.Contains(eth0, "inet "+ip.String()) {
			t.Fatalf("round %d: eth0 after DEL as %s and ADD as %s:\n%s", i, from, to, eth0)
		}
		if n := mustUsed(t, r.l, "h1"); n != used+1 {
			t.Fatalf("round %d: h1 holds %d addresses, want %d", i, n, used+1)
		}
	}
	cniDel(t, r, "fmgc", names[0]) // the last ADD was under names[0]
	if n := mustUsed(t, r.l, "h1"); n != used {
		t.Errorf("after the last DEL h1 holds %d addresses, want %d", n, used)
	}
}

func testCNIDelGone(t *testing.T, r *cniRig) {
	used := mustUsed(t, r.l, "h1")
	ns := kerneltest.Netns(t, "cd")
	cniAdd(t, r, "h1", "fmgc", ns, "")
	if n := mustUsed(t, r.l, "h1"); n != used+1 {
		t.Fatalf("after ADD h1 holds %d addresses, want %d", n, used+1)
	}
	kerneltest.Run(t, "ip", "netns", "del", ns) // the container goes first
	for range 2 {                               // DEL comes later, and again
		cniDel(t, r, "fmgc", ns)
		if n := mustUsed(t, r.l, "h1"); n != used {
			t.Fatalf("after DEL of a gone container h1 holds %d addresses, want %d", n, used)
		}
	}
}

func testCNIDelLatency(t *testing.T, r *cniRig) {
	before := len(containersOf(t, r.l, "h1"))
	var names []string
	for range cniDelRounds {
		ns := kerneltest.Netns(t, "cd")
		cniAdd(t, r, "h1", "fmgc", ns, "")
		names = append(names, ns)
	}
	var del, again []float64
	for _, ns := range names { // interleaved: one DEL, then the same DEL again
		del = append(del, ms(cniDel(t, r, "fmgc", ns)))
		again = append(again, ms(cniDel(t, r, "fmgc", ns)))
	}
	p := func(xs []float64, q float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[min(len(s)-1, int(q*float64(len(s))))]
	}
	t.Logf("FIGURE: cnitool DEL of an attached container p50 %.1f ms p99 %.1f ms; of a deleted one (same processes, nothing to do) p50 %.1f ms p99 %.1f ms; difference of p50 %.1f ms (%d DELs each)",
		p(del, 0.5), p(del, 0.99), p(again, 0.5), p(again, 0.99), p(del, 0.5)-p(again, 0.5), len(del))
	if n := len(containersOf(t, r.l, "h1")); n != before {
		t.Errorf("h1 lists %d containers after every DEL, %d before the ADDs", n, before)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
