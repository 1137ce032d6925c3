package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// TestRootVXLANDataPlane runs 3 hosts x 2 containers in vxlan mode and checks
// what a user sees: every container reaches every container and host, the
// largest unfragmented packet passes, a TCP transfer arrives intact from the
// sender's own address, a route deleted by hand comes back, and a dead
// host's routes go away and return.
func TestRootVXLANDataPlane(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 3, ContainersPerHost: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("full mesh ping", func(t *testing.T) {
		failed := 0
		results := l.PingMesh(ctx)
		for _, r := range results {
			if !r.OK() {
				failed++
				t.Errorf("%s -> %s (%s): %d/%d replies %s", r.From, r.To, r.Addr, r.Received, r.Sent, r.Err)
			}
		}
		t.Logf("%d pings, %d failed", len(results), failed)
	})

	c11, _ := l.Container("c11")
	c21, _ := l.Container("c21")
	c31, _ := l.Container("c31")

	t.Run("largest unfragmented packet", func(t *testing.T) {
		var att struct{ MTU int }
		out, err := l.CLI("h1", "containers", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var list []struct{ MTU int }
		if err := json.Unmarshal(out, &list); err != nil || len(list) == 0 {
			t.Fatalf("containers --json: %v\n%s", err, out)
		}
		att.MTU = list[0].MTU
		if att.MTU != 1450 {
			t.Errorf("container MTU = %d, want 1450 (underlay 1500 - 50)", att.MTU)
		}
		size := strconv.Itoa(att.MTU - 28)
		kerneltest.NsRun(t, c11.Netns, "ping", "-c", "2", "-W", "2", "-M", "do", "-s", size, c21.IP.Addr().String())
		if _, err := kerneltest.NsOutput(c11.Netns, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", strconv.Itoa(att.MTU-27), c21.IP.Addr().String()); err == nil {
			t.Errorf("a packet one byte over the MTU passed with DF set")
		}
	})

	t.Run("tcp transfer intact, no NAT", func(t *testing.T) {
		s := listenIn(t, c21.Netns, 5001)
		conn := dialIn(t, c11.Netns, netip.AddrPortFrom(c21.IP.Addr(), 5001))
		sum, err := sendPaced(conn, 8<<20, 256<<10, 0, nil)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := waitSink(t, s, 30*time.Second)
		if r.sum != sum || r.n != 8<<20 {
			t.Fatalf("received %d bytes with sum %s, sent %d with %s", r.n, r.sum, 8<<20, sum)
		}
		if r.remote != c11.IP.Addr() {
			t.Fatalf("receiver saw source %s, want the sender's own %s (no NAT)", r.remote, c11.IP.Addr())
		}
	})

	h1, _ := l.Host("h1")
	t.Run("route deleted by hand comes back", func(t *testing.T) {
		block := netip.PrefixFrom(c21.IP.Addr(), c21.IP.Bits()).Masked().String()
		kerneltest.Run(t, "ip", "-n", h1.Netns, "route", "del", block)
		start := time.Now()
		kerneltest.Eventually(t, 15*time.Second, "the route to "+block+" to come back", func() bool {
			out, _ := kerneltest.Output("ip", "-n", h1.Netns, "route", "show", block, "proto", "95")
			return strings.Contains(out, block)
		})
		t.Logf("FIGURE: route restored %s after it was deleted by hand", time.Since(start).Round(time.Millisecond))
		kerneltest.NsRun(t, c11.Netns, "ping", "-c", "1", "-W", "2", c21.IP.Addr().String())
	})

	t.Run("dead host's routes withdrawn and restored", func(t *testing.T) {
		block := netip.PrefixFrom(c31.IP.Addr(), c31.IP.Bits()).Masked().String()
		hasRoute := func() bool {
			out, _ := kerneltest.Output("ip", "-n", h1.Netns, "route", "show", block, "proto", "95")
			return strings.Contains(out, block)
		}
		if !hasRoute() {
			t.Fatalf("h1 has no route to h3's block %s", block)
		}
		if err := l.StopAgent("h3", syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		kerneltest.Eventually(t, 30*time.Second, "h1 to withdraw the route to dead h3", func() bool { return !hasRoute() })
		t.Logf("FIGURE: dead host's routes withdrawn after %s", time.Since(start).Round(time.Millisecond))
		if err := l.StartAgent("h3"); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		kerneltest.Eventually(t, 30*time.Second, "h1 to restore the route to h3", hasRoute)
		t.Logf("FIGURE: routes back %s after the host's agent restarted", time.Since(start).Round(time.Millisecond))
		kerneltest.Eventually(t, 15*time.Second, "c11 to reach c31 again", func() bool {
			_, err := kerneltest.NsOutput(c11.Netns, "ping", "-c", "1", "-W", "1", c31.IP.Addr().String())
			return err == nil
		})
	})
}

// TestRootVXLANPurge: leave --purge removes every kernel object the agent
// made and exits 0.
func TestRootVXLANPurge(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 2, ContainersPerHost: 1})
	h2, _ := l.Host("h2")
	if out, err := cli(l, "h2", "leave", "--purge"); err != nil {
		t.Fatalf("leave --purge: %s", out)
	}
	if code, err := l.WaitAgentExit("h2", 20*time.Second); err != nil || code != 0 {
		t.Fatalf("agent after leave --purge: exit %d, %v", code, err)
	}
	links := kerneltest.Run(t, "ip", "-n", h2.Netns, "-o", "link", "show")
	for _, name := range []string{"flatmesh0", "flatmesh.vx", ": fm"} {
		if strings.Contains(links, name) {
			t.Errorf("%s is still there after the purge:\n%s", name, links)
		}
	}
	if routes := kerneltest.Run(t, "ip", "-n", h2.Netns, "route", "show", "proto", "95"); strings.TrimSpace(routes) != "" {
		t.Errorf("flatmesh routes left after the purge:\n%s", routes)
	}
	if rules := kerneltest.NsRun(t, h2.Netns, "iptables-save"); strings.Contains(rules, "FLATMESH") {
		t.Errorf("firewall chains left after the purge:\n%s", rules)
	}
}

// TestRootVXLANAgentRestartKeepsFlows: SIGKILL the agent of the sending host
// during a TCP stream and restart it; the stream completes intact.
func TestRootVXLANAgentRestartKeepsFlows(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 2, ContainersPerHost: 1})
	c11, _ := l.Container("c11")
	c21, _ := l.Container("c21")
	// Routes to a block reach the other hosts a few tens of ms after the
	// attach that claimed it: wait for them before starting the stream.
	kerneltest.Eventually(t, 10*time.Second, "c11 to reach c21", func() bool {
		_, err := kerneltest.NsOutput(c11.Netns, "ping", "-c", "1", "-W", "1", c21.IP.Addr().String())
		return err == nil
	})
	before, err := kerneltest.Output("ip", "-n", l.Hosts()[0].Netns, "route", "show", "proto", "95")
	if err != nil {
		t.Fatal(err)
	}
	s := listenIn(t, c21.Netns, 5002)
	conn := dialIn(t, c11.Netns, netip.AddrPortFrom(c21.IP.Addr(), 5002))
	killed := make(chan error, 1)
	sum, err := sendPaced(conn, 6<<20, 64<<10, 50*time.Millisecond, func(i int) {
		switch i {
		case 10:
			killed <- l.StopAgent("h1", syscall.SIGKILL)
		case 40:
			if err := l.StartAgent("h1"); err != nil {
				t.Error(err)
			}
		}
	})
	conn.Close()
	if err != nil {
		t.Fatalf("stream broke while the agent was down or restarting: %v", err)
	}
	if err := <-killed; err != nil {
		t.Fatal(err)
	}
	r := waitSink(t, s, 30*time.Second)
	if r.sum != sum {
		t.Fatalf("stream corrupted: receiver sum %s, sender %s", r.sum, sum)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	after, _ := kerneltest.Output("ip", "-n", l.Hosts()[0].Netns, "route", "show", "proto", "95")
	if after != before {
		t.Errorf("the restarted agent changed the routes:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	out, err := l.CLI("h1", "containers", "--json")
	if err != nil || !strings.Contains(string(out), c11.IP.String()) {
		t.Errorf("the restarted agent does not list its container %s: %v\n%s", c11.IP, err, out)
	}
}

// TestRootAttachBadInput: clear errors and nothing half-made.
func TestRootAttachBadInput(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 1, ContainersPerHost: 1})
	h1, _ := l.Host("h1")
	c11, _ := l.Container("c11")
	links := func() string {
		out, _ := kerneltest.Output("ip", "-n", h1.Netns, "-o", "link", "show", "type", "veth")
		return out
	}
	ipamState := func() string {
		out, _ := l.CLI("h1", "containers", "--json")
		return string(out)
	}
	fresh := kerneltest.Netns(t, "eb")
	beforeLinks, beforeIPAM := links(), ipamState()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing namespace", []string{"attach", "/run/netns/no-such-ns"}, "does not exist"},
		{"address outside the range", []string{"attach", fresh, "--ip", "192.0.2.9"}, "outside"},
		{"address in use", []string{"attach", fresh, "--ip", c11.IP.Addr().String()}, c11.IP.Addr().String()},
		{"interface name too long", []string{"attach", fresh, "--ifname", "averyveryverylongname"}, "at most 15"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := cli(l, "h1", tc.args...)
			if err == nil {
				t.Fatalf("attach succeeded, want an error:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("error does not say %q:\n%s", tc.want, out)
			}
			if got := links(); got != beforeLinks {
				t.Fatalf("a veth was left behind:\nbefore:\n%s\nafter:\n%s", beforeLinks, got)
			}
			if got := ipamState(); got != beforeIPAM {
				t.Fatalf("an address leaked:\nbefore:\n%s\nafter:\n%s", beforeIPAM, got)
			}
		})
	}
	// A container whose namespace vanished is cleaned up by the next pass.
	gone := kerneltest.Netns(t, "eg")
	if out, err := cli(l, "h1", "attach", gone, "--name", "gone"); err != nil {
		t.Fatalf("attach: %s", out)
	}
	kerneltest.Run(t, "ip", "netns", "del", gone)
	kerneltest.Eventually(t, 20*time.Second, "the vanished container's address to be released", func() bool {
		out, err := l.CLI("h1", "ipam", "--json")
		var m api.IPAM
		if err != nil || json.Unmarshal(out, &m) != nil {
			return false
		}
		used := 0
		for _, b := range m.Blocks {
			used += b.Used
		}
		return used == 1 && ipamState() == beforeIPAM // only c11 is left
	})

	// Attaching the same container twice returns the same answer.
	first, err := l.CLI("h1", "attach", fresh, "--name", "twice", "--json")
	if err != nil {
		t.Fatalf("attach: %v\n%s", err, first)
	}
	second, err := l.CLI("h1", "attach", fresh, "--name", "twice", "--json")
	if err != nil || string(first) != string(second) {
		t.Fatalf("second attach differs (err %v):\n%s\n---\n%s", err, first, second)
	}
	var twice api.Attachment
	if err := json.Unmarshal(first, &twice); err != nil || twice.HostIf == "" {
		t.Fatalf("attach --json: %v\n%s", err, first)
	}
	// A detach answers once the container is cut off (its host end down or
	// gone) and deletes the pair right after; an attach of the same
	// container at once waits for that delete and makes a live pair.
	detachCutOff(t, l, h1.Netns, "twice", twice.HostIf)
	again, err := l.CLI("h1", "attach", fresh, "--name", "twice", "--json")
	if err != nil {
		t.Fatalf("attach right after the detach: %v\n%s", err, again)
	}
	if out, _ := kerneltest.Output("ip", "-n", h1.Netns, "-o", "link", "show", twice.HostIf); !strings.Contains(out, ",UP") {
		t.Fatalf("the attach right after the detach left its host end down:\n%s", out)
	}
	detachCutOff(t, l, h1.Netns, "twice", twice.HostIf)
	kerneltest.Eventually(t, 5*time.Second, "the detached pair to be deleted", func() bool { return links() == beforeLinks })

	// What a crash between a detach's answer and its delete leaves: a down
	// pair of ours without an allocation. A pass deletes it; an up one is
	// left alone.
	for _, st := range []string{"down", "up"} {
		host := attach.HostIfName("netns:4:1"+st, "eth0")
		kerneltest.Run(t, "ip", "-n", h1.Netns, "link", "add", host, "type", "veth", "peer", "name", "xp"+st)
		t.Cleanup(func() { _, _ = kerneltest.Output("ip", "-n", h1.Netns, "link", "del", host) })
		kerneltest.Run(t, "ip", "-n", h1.Netns, "link", "set", host, st) // before the alias makes it ours
		kerneltest.Run(t, "ip", "-n", h1.Netns, "link", "set", host, "alias", attach.Alias("netns:4:1"+st, "eth0"))
	}
	upHost := attach.HostIfName("netns:4:1up", "eth0")
	kerneltest.Eventually(t, 25*time.Second, "the cut-off pair without an allocation to be deleted", func() bool {
		out, _ := kerneltest.Output("ip", "-n", h1.Netns, "-o", "link", "show", "type", "veth")
		return !strings.Contains(out, attach.HostIfName("netns:4:1down", "eth0")) && strings.Contains(out, upHost)
	})
}

// detachCutOff detaches name and checks that its host end hostIf is down
// or gone when the detach answers.
func detachCutOff(t *testing.T, l *lab.Lab, netns, name, hostIf string) {
	t.Helper()
	if out, err := l.CLI("h1", "detach", name); err != nil {
		t.Fatalf("detach: %v\n%s", err, out)
	}
	if out, err := kerneltest.Output("ip", "-n", netns, "-o", "link", "show", hostIf); err == nil && strings.Contains(out, ",UP") {
		t.Fatalf("the detach answered with the host end still up:\n%s", out)
	}
}
