package e2e

import (
	"context"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// kernelView is what the host's kernel says about its links, addresses and
// routes, without counters or timers, for before/after comparisons.
func kernelView(t *testing.T, netns string) string {
	t.Helper()
	// IPv6 duplicate address detection changes addresses and local routes
	// by itself for a second or two after a link comes up: let it settle.
	kerneltest.Eventually(t, 10*time.Second, "IPv6 DAD to settle in "+netns, func() bool {
		out, _ := kerneltest.Output("ip", "-n", netns, "addr", "show")
		return !strings.Contains(out, "tentative")
	})
	var b strings.Builder
	for _, args := range [][]string{
		{"-o", "link", "show"},
		{"-o", "addr", "show"},
		{"route", "show", "table", "all"},
		{"-6", "route", "show", "table", "all"},
	} {
		out := kerneltest.Run(t, "ip", append([]string{"-n", netns}, args...)...)
		b.WriteString(lifetimes.ReplaceAllString(out, ""))
	}
	return b.String()
}

var lifetimes = regexp.MustCompile(`(valid_lft|preferred_lft) \S+|expires \S+`)

// pingLoss runs ping every 50 ms from netns to addr until stop is closed
// and returns how many replies were lost.
func pingLoss(t *testing.T, netns, addr string, stop <-chan struct{}) <-chan [2]int {
	res := make(chan [2]int, 1)
	cmd := exec.Command("ip", "netns", "exec", netns, "ping", "-n", "-i", "0.05", "-W", "1", addr)
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		<-stop
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(out.String())
		if m == nil {
			res <- [2]int{-1, -1}
			return
		}
		sent, _ := strconv.Atoi(m[1])
		got, _ := strconv.Atoi(m[2])
		res <- [2]int{sent, got}
	}()
	return res
}

// TestRootFlatLAN: the flat variant of the lab: a LAN switch, a plain
// machine (the router, no agent), and agent hosts whose NIC moves into a
// bridge.
func TestRootFlatLAN(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 2, Mode: lab.ModeFlat, ContainersPerHost: 1})
	pm, _ := l.Plain()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("switch-over keeps the host reachable", func(t *testing.T) {
		h, err := l.AddIdleHost(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before := kernelView(t, h.Netns)
		stop := make(chan struct{})
		loss := pingLoss(t, pm.Netns, h.Addr().String(), stop)
		time.Sleep(500 * time.Millisecond)
		if err := l.StartAgent(h.Name, "--join", l.Hosts()[0].Addr().String()); err != nil {
			t.Fatal(err)
		}
		if err := l.WaitReady(ctx, h.Name); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		close(stop)
		r := <-loss
		t.Logf("FIGURE: pings every 50 ms from the plain machine during the switch-over: %d sent, %d lost", r[0], r[0]-r[1])
		if r[0] <= 0 || r[0]-r[1] > 2 {
			t.Fatalf("lost %d of %d pings during the switch-over, want at most 2", r[0]-r[1], r[0])
		}
		addrs := kerneltest.Run(t, "ip", "-n", h.Netns, "-o", "-4", "addr", "show", "dev", "fmbr0")
		if !strings.Contains(addrs, h.Underlay.String()) {
			t.Fatalf("the bridge does not hold the host's address %s:\n%s", h.Underlay, addrs)
		}
		def := kerneltest.Run(t, "ip", "-n", h.Netns, "route", "show", "default")
		if !strings.Contains(def, "dev fmbr0") {
			t.Fatalf("the default route did not move to the bridge:\n%s", def)
		}

		// An agent restart changes nothing in the kernel.
		switched := kernelView(t, h.Netns)
		if err := l.StopAgent(h.Name, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := l.StartAgent(h.Name); err != nil {
			t.Fatal(err)
		}
		if err := l.WaitReady(ctx, h.Name); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if got := kernelView(t, h.Netns); got != switched {
			t.Fatalf("an agent restart changed the kernel:\nbefore:\n%s\nafter:\n%s", switched, got)
		}

		// flat restore puts the NIC back exactly.
		if out, err := cli(l, h.Name, "flat", "restore"); err != nil {
			t.Fatalf("flat restore: %s", out)
		}
		kerneltest.Eventually(t, 10*time.Second, "the host to look as before the switch-over", func() bool {
			return kernelView(t, h.Netns) == before
		})
	})

	t.Run("containers, hosts and the plain machine reach each other", func(t *testing.T) {
		for _, r := range l.PingMesh(ctx) {
			if !r.OK() {
				t.Errorf("%s -> %s (%s): %d/%d replies %s", r.From, r.To, r.Addr, r.Received, r.Sent, r.Err)
			}
		}
		c11, _ := l.Container("c11")
		s := listenIn(t, pm.Netns, 5003)
		conn := dialIn(t, c11.Netns, netip.AddrPortFrom(pm.Addr.Addr(), 5003))
		sum, err := sendPaced(conn, 1<<20, 64<<10, 0, nil)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := waitSink(t, s, 20*time.Second)
		if r.sum != sum || r.remote != c11.IP.Addr() {
			t.Fatalf("plain machine saw %s (sum ok %v), want the container's own %s", r.remote, r.sum == sum, c11.IP.Addr())
		}
	})

	t.Run("an address a LAN device holds is never handed out", func(t *testing.T) {
		c11, _ := l.Container("c11")
		next1 := c11.IP.Addr().Next()
		next2 := next1.Next()
		for _, a := range []netip.Addr{next1, next2} {
			kerneltest.Run(t, "ip", "-n", pm.Netns, "addr", "add", a.String()+"/32", "dev", "eth0")
		}
		out, err := cli(l, "h1", "attach", kerneltest.Netns(t, "fp"), "--ip", next1.String())
		if err == nil || !strings.Contains(out, "another device on the LAN") {
			t.Fatalf("asking for an address the plain machine holds: err %v\n%s", err, out)
		}
		c, err := l.AddContainer(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		if c.IP.Addr() == next1 || c.IP.Addr() == next2 {
			t.Fatalf("container got %s, which the plain machine holds", c.IP.Addr())
		}
		t.Logf("skipped %s and %s (held by the plain machine), got %s", next1, next2, c.IP.Addr())
	})
}
