package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kerneltest"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

// TestRootDockerVXLAN: docker run --network on a vxlan cluster, across hosts.
func TestRootDockerVXLAN(t *testing.T) {
	dl := upDockerLab(t, lab.Options{Hosts: 2}, "--subnet", "10.213.0.0/16")
	h1, h2 := mustHost(t, dl.Lab, "h1"), mustHost(t, dl.Lab, "h2")
	a1 := dl.run(t, "h1", "web1")
	a2 := dl.run(t, "h2", "web2")
	t.Logf("web1 %s on h1, web2 %s on h2", a1, a2)

	t.Run("container interface", func(t *testing.T) {
		out := dl.docker(t, "h1", "exec", "web1", "ip", "-o", "addr", "show", "eth0")
		if !strings.Contains(out, a1.String()+"/16") {
			t.Fatalf("web1 eth0 (want the pool's /16):\n%s", out)
		}
		if out := dl.docker(t, "h1", "exec", "web1", "ip", "link", "show", "eth0"); !strings.Contains(out, "mtu 1450") {
			t.Fatalf("web1 eth0 MTU (want the VXLAN MTU 1450):\n%s", out)
		}
		if out := dl.docker(t, "h1", "exec", "web1", "ip", "route"); strings.Count(out, "default") != 1 {
			t.Fatalf("web1 routes (one default, no gateway service):\n%s", out)
		}
	})
	t.Run("across hosts", func(t *testing.T) {
		dl.ping(t, "h1", "web1", a2)
		dl.ping(t, "h2", "web2", a1)
		hostPing(t, h2.Netns, a1)
		hostPing(t, h1.Netns, a2)
	})
	t.Run("Docker's own networks stay closed to flatmesh", func(t *testing.T) {
		dl.docker(t, "h1", "network", "create", "-d", "bridge", "--subnet", "172.30.0.0/24", "dbr")
		dl.docker(t, "h1", "run", "-d", "--stop-timeout", "1", "--name", "iso", "--network", "dbr", "--ip", "172.30.0.10", "busybox", "sleep", "100000")
		iso := netip.MustParseAddr("172.30.0.10")
		hostPing(t, h1.Netns, iso) // it is up, and its own host reaches it
		if out, err := dl.dockerErr("h1", "exec", "web1", "ping", "-c", "1", "-W", "1", iso.String()); err == nil {
			t.Fatalf("a flatmesh container reached a container on Docker's bridge network:\n%s", out)
		}
		dl.docker(t, "h1", "rm", "-f", "iso")
		dl.docker(t, "h1", "network", "rm", "dbr")
	})
	t.Run("flatmesh containers names them", func(t *testing.T) {
		kerneltest.Eventually(t, 10*time.Second, "web1 listed by name", func() bool {
			for _, c := range containersOf(t, dl.Lab, "h1") {
				if strings.HasPrefix(c.IP, a1.String()+"/") && c.Name == "web1" {
					return true
				}
			}
			return false
		})
	})
	dl.noSubnet(t, netip.MustParsePrefix("10.213.0.0/16"), 16, true)
	dl.lifecycle(t, a2)
	dl.faults(t, a1, a2)
}
