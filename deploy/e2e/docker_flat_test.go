package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// TestRootDockerFlat is the seed scenario: hosts 172.16.44.254 and .253 on
// the LAN 172.16.0.0/16 with a plain router (172.16.0.1), flatmesh in flat
// mode handing out 172.16.44.0/24, containers started by Docker with fixed
// LAN addresses on both hosts.
func TestRootDockerFlat(t *testing.T) {
	o := lab.Options{Hosts: 2, Mode: lab.ModeFlat,
		ExtraAgentArgs: []string{"--flat-range", "172.16.44.0/24", "--flat-exclude", "172.16.44.240/28"}}
	dl := upDockerLab(t, o, "--subnet", "172.16.0.0/16", "--ip-range", "172.16.44.0/24", "--gateway", "172.16.0.1")
	pm, _ := dl.Plain()
	h2 := mustHost(t, dl.Lab, "h2")
	// Fixed addresses on different hosts must lie in different IPAM blocks
	// (/28 in flat mode): a block belongs to one host at a time.
	c1, c2 := netip.MustParseAddr("172.16.44.10"), netip.MustParseAddr("172.16.44.20")
	router := netip.MustParseAddr("172.16.0.1")
	if got := dl.run(t, "h1", "web1", "--ip", c1.String()); got != c1 {
		t.Fatalf("web1 got %s", got)
	}
	if got := dl.run(t, "h2", "web2", "--ip", c2.String()); got != c2 {
		t.Fatalf("web2 got %s", got)
	}
	t.Run("a LAN device", func(t *testing.T) {
		out := dl.docker(t, "h1", "exec", "web1", "ip", "-o", "addr", "show", "eth0")
		if !strings.Contains(out, c1.String()+"/16") {
			t.Fatalf("web1 eth0 (want the LAN's /16):\n%s", out)
		}
		if out := dl.docker(t, "h1", "exec", "web1", "ip", "route"); !strings.Contains(out, "default via 172.16.0.1") {
			t.Fatalf("web1 routes (want the LAN router):\n%s", out)
		}
	})
	t.Run("across hosts, to and from the LAN", func(t *testing.T) {
		dl.ping(t, "h1", "web1", c2)
		dl.ping(t, "h2", "web2", c1)
		dl.ping(t, "h1", "web1", router)
		hostPing(t, pm.Netns, c1)
		hostPing(t, pm.Netns, c2)
		hostPing(t, h2.Netns, c1)
	})
	t.Run("restart with the same address is announced", func(t *testing.T) {
		dl.docker(t, "h1", "restart", "-t", "0", "web1")
		if got := dl.addr(t, "h1", "web1"); got != c1 {
			t.Fatalf("after restart web1 has %s", got)
		}
		// The router cached web1's old MAC a moment ago; the announcement
		// must have replaced it.
		kerneltest.Eventually(t, 3*time.Second, "the router to reach the restarted web1", func() bool {
			_, err := kerneltest.NsOutput(pm.Netns, "ping", "-c", "1", "-W", "1", c1.String())
			return err == nil
		})
	})
	dl.noSubnet(t, netip.MustParsePrefix("172.16.44.0/24"), 16, false)
	t.Run("refusals say what fits", func(t *testing.T) {
		out, err := dl.dockerErr("h1", "network", "create", "-d", "flatmesh", "--ipam-driver", "flatmesh", "--subnet", "10.9.0.0/16", "bad")
		if err == nil || !strings.Contains(out, "--subnet 172.16.0.0/16 --ip-range 172.16.44.0/24 --gateway 172.16.0.1") {
			t.Fatalf("a foreign --subnet: %v\n%s", err, out)
		}
		out, err = dl.dockerErr("h1", "network", "create", "-d", "flatmesh", "--ipam-driver", "flatmesh", "--subnet", "172.16.0.0/16", "--gateway", "172.16.0.9", "bad")
		if err == nil || !strings.Contains(out, "--gateway 172.16.0.9 does not fit") {
			t.Fatalf("a wrong --gateway: %v\n%s", err, out)
		}
		// A device that is not ours answers for 172.16.44.200: the probe finds it.
		kerneltest.Run(t, "ip", "-n", pm.Netns, "addr", "add", "172.16.44.200/16", "dev", "eth0")
		out, err = dl.dockerErr("h1", "run", "-d", "--name", "dup", "--network", "fm", "--ip", "172.16.44.200", "busybox", "sleep", "1000")
		if err == nil || !strings.Contains(out, "another device on the LAN") {
			t.Fatalf("an --ip a LAN device uses: %v\n%s", err, out)
		}
		dl.docker(t, "h1", "rm", "-f", "dup")
	})
}
