package e2e

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// noSubnet: a network made without --subnet ("auto" on h1 and h2) hands
// out the cluster's space (addresses in want, in vxlan mode from the host's
// own block) with the prefix length bits, its containers reach each other
// across hosts, and Docker refuses --ip on it with its own message.
func (dl *dockerLab) noSubnet(t *testing.T, want netip.Prefix, bits int, ownBlock bool) {
	t.Run("no --subnet: the cluster's space", func(t *testing.T) {
		for _, h := range []string{"h1", "h2"} {
			dl.docker(t, h, "network", "create", "-d", "flatmesh", "--ipam-driver", "flatmesh", "auto")
		}
		if got := dl.docker(t, "h1", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "auto"); got != "0.0.0.0/0" {
			t.Fatalf("auto's pool as Docker records it: %q (want 0.0.0.0/0)", got)
		}
		addrs := map[string]netip.Addr{}
		for _, h := range []string{"h1", "h2"} {
			name := "auto-" + h
			dl.docker(t, h, "run", "-d", "--stop-timeout", "1", "--name", name, "--network", "auto", lab.BusyboxImage, "sleep", "100000")
			a := dl.addrIn(t, h, name, "auto")
			if !want.Contains(a) {
				t.Fatalf("%s got %s, outside %s", name, a, want)
			}
			out := dl.docker(t, h, "exec", name, "ip", "-o", "addr", "show", "eth0")
			if !strings.Contains(out, a.String()+"/"+strconv.Itoa(bits)) {
				t.Fatalf("%s eth0 (want /%d, as with --subnet):\n%s", name, bits, out)
			}
			if ownBlock {
				dl.inOwnBlock(t, h, name, a)
			}
			addrs[h] = a
		}
		dl.ping(t, "h1", "auto-h1", addrs["h2"])
		dl.ping(t, "h2", "auto-h2", addrs["h1"])
		hostPing(t, mustHost(t, dl.Lab, "h2").Netns, addrs["h1"])
		// Docker's own rule, before any plugin call: --ip needs a network
		// made with --subnet.
		out, err := dl.dockerErr("h1", "run", "-d", "--name", "autoip", "--network", "auto", "--ip", addrs["h1"].Next().String(), lab.BusyboxImage, "sleep", "1000")
		if err == nil || !strings.Contains(out, "user configured subnets") {
			t.Fatalf("--ip on a network without --subnet: err %v, output:\n%s", err, out)
		}
		dl.docker(t, "h1", "rm", "-f", "autoip")
		for _, h := range []string{"h1", "h2"} {
			dl.docker(t, h, "rm", "-f", "auto-"+h)
			dl.docker(t, h, "network", "rm", "auto")
		}
	})
}

// addrIn is a container's address in network nw.
func (dl *dockerLab) addrIn(t *testing.T, host, name, nw string) netip.Addr {
	t.Helper()
	out := dl.docker(t, host, "inspect", "-f", "{{with index .NetworkSettings.Networks \""+nw+"\"}}{{.IPAddress}}{{end}}", name)
	a, err := netip.ParseAddr(out)
	if err != nil {
		t.Fatalf("container %s on %s has no address in %s: %q", name, host, nw, out)
	}
	return a
}

// inOwnBlock checks that a's block is one its host serves: the container's
// default gateway is an address of its host whose prefix holds a.
func (dl *dockerLab) inOwnBlock(t *testing.T, host, name string, a netip.Addr) {
	t.Helper()
	f := strings.Fields(dl.docker(t, host, "exec", name, "ip", "route", "show", "default"))
	if len(f) < 3 || f[1] != "via" {
		t.Fatalf("%s has no default route: %v", name, f)
	}
	gw := f[2]
	for _, line := range strings.Split(hostAddrs(t, mustHost(t, dl.Lab, host).Netns), "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			p, err := netip.ParsePrefix(f[i+1])
			if f[i] != "inet" || err != nil || p.Addr().String() != gw {
				continue
			}
			if !p.Masked().Contains(a) {
				t.Fatalf("%s at %s: its gateway %s on %s is in another block", name, a, p, host)
			}
			return
		}
	}
	t.Fatalf("%s's gateway %s is not an address of %s", name, gw, host)
}

func hostAddrs(t *testing.T, netns string) string {
	return kerneltest.Run(t, "ip", "-n", netns, "-o", "-4", "addr", "show")
}
