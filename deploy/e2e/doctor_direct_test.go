package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/agent/doctor"
	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// doctorCheck runs `flatmesh doctor --json` in host h's namespace with its
// agent's arguments and returns the named check's result.
func doctorCheck(t *testing.T, h lab.Host, check string) doctor.Result {
	t.Helper()
	args := append([]string{"netns", "exec", h.Netns, binary, "doctor", "--json"}, h.Args[1:]...)
	var out, errb bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	_ = cmd.Run() // exit 1 when a check fails; the report says which
	var rep doctor.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("doctor on %s: %v\n%s\n%s", h.Name, err, out.String(), errb.String())
	}
	for _, c := range rep.Checks {
		if c.Check == check {
			t.Logf("doctor on %s: %s %s: %s (fix: %s)", h.Name, c.Check, c.Status, c.Detail, c.Fix)
			return c
		}
	}
	t.Fatalf("doctor on %s has no %s check: %+v", h.Name, check, rep)
	return doctor.Result{}
}

// TestRootDoctorDirectRouting: three hosts on two subnets behind a router
// with --direct-routing. doctor on h1 names h3 (same subnet) direct and h2
// tunnelled and finds h3 answering a ping from a container address; with a
// firewall on h3 that drops container source addresses from the LAN, it
// fails naming h3 (and container traffic h1 -> h3 is indeed lost); with
// strict rp_filter on h1 it warns.
func TestRootDoctorDirectRouting(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 3, Subnets: 2, ContainersPerHost: 1, ExtraAgentArgs: []string{"--direct-routing"}})
	hosts := l.Hosts()
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	if h1.Subnet() != h3.Subnet() || h1.Subnet() == h2.Subnet() {
		t.Fatalf("lab layout: h1 subnet %d, h2 %d, h3 %d", h1.Subnet(), h2.Subnet(), h3.Subnet())
	}
	byHost := waitDirectRoutes(t, l, "flatmesh.vx")
	c1, c3 := byHost[h1.Name], byHost[h3.Name]

	r := doctorCheck(t, h1, "direct-routing")
	if r.Status != doctor.OK || !strings.Contains(r.Detail, fmt.Sprintf("%s %s (", h3.Name, h3.Addr())) ||
		!strings.Contains(r.Detail, fmt.Sprintf("through the vxlan tunnel: %s %s", h2.Name, h2.Addr())) ||
		!strings.Contains(r.Detail, "every direct peer tested answers a ping from container address") {
		t.Errorf("direct routing on, nothing in the way: %s %q", r.Status, r.Detail)
	}

	t.Run("a firewall dropping container addresses", func(t *testing.T) {
		space := netip.PrefixFrom(c1.IP.Addr(), 16).Masked().String()
		rule := func(op string) []string {
			return []string{"-t", "raw", op, "PREROUTING", "-i", "eth0", "-s", space, "-j", "DROP"}
		}
		kerneltest.NsRun(t, h3.Netns, "iptables", rule("-I")...)
		t.Cleanup(func() { _, _ = kerneltest.NsOutput(h3.Netns, "iptables", rule("-D")...) })
		if _, err := kerneltest.NsOutput(c1.Netns, "ping", "-c", "1", "-W", "1", c3.IP.Addr().String()); err == nil {
			t.Fatal("the rule on h3 did not stop container traffic from h1: the case tests nothing")
		}
		r := doctorCheck(t, h1, "direct-routing")
		if r.Status != doctor.Fail || !strings.Contains(r.Detail, "unreachable directly from container address") ||
			!strings.Contains(r.Detail, h3.Name+" (no answer") || r.Fix == "" {
			t.Errorf("with h3 dropping container addresses: %s %q", r.Status, r.Detail)
		}
	})

	t.Run("strict rp_filter", func(t *testing.T) {
		old := strings.TrimSpace(kerneltest.NsRun(t, h1.Netns, "sysctl", "-n", "net.ipv4.conf.eth0.rp_filter"))
		kerneltest.NsRun(t, h1.Netns, "sysctl", "-w", "net.ipv4.conf.eth0.rp_filter=1")
		t.Cleanup(func() { _, _ = kerneltest.NsOutput(h1.Netns, "sysctl", "-w", "net.ipv4.conf.eth0.rp_filter="+old) })
		r := doctorCheck(t, h1, "direct-routing")
		if r.Status != doctor.Warn || !strings.Contains(r.Detail, "rp_filter = 1 (strict) on eth0") {
			t.Errorf("with rp_filter=1 on h1's eth0: %s %q", r.Status, r.Detail)
		}
	})

	r = doctorCheck(t, h2, "direct-routing")
	if r.Status != doctor.OK || !strings.Contains(r.Detail, "direct via eth0") || !strings.Contains(r.Detail, ": none;") {
		t.Errorf("on h2, alone on its subnet: %s %q", r.Status, r.Detail)
	}
}

// TestRootDoctorTunnelGuard: doctor's tunnel-guard check finds every live
// member in the firewall's member set, and names a member removed from it
// by hand (its tunnel packets would be dropped).
func TestRootDoctorTunnelGuard(t *testing.T) {
	kerneltest.RequireCommands(t, "ipset")
	l := upLab(t, lab.Options{Hosts: 2, ContainersPerHost: 1})
	h1, h2 := l.Hosts()[0], l.Hosts()[1]
	if r := doctorCheck(t, h1, "tunnel-guard"); r.Status != doctor.OK || !strings.Contains(r.Detail, "every live member among them (1)") {
		t.Fatalf("healthy lab: %s %q", r.Status, r.Detail)
	}
	// The agent puts the member back at its next recheck (30 s): try
	// again if that happened between the deletion and the check.
	for try := 1; ; try++ {
		kerneltest.NsRun(t, h1.Netns, "ipset", "del", "flatmesh-members", h2.Addr().String())
		r := doctorCheck(t, h1, "tunnel-guard")
		if r.Status == doctor.Fail && strings.Contains(r.Detail, fmt.Sprintf("lacks %s (%s)", h2.Name, h2.Addr())) {
			break
		}
		if try == 3 {
			t.Fatalf("h2 deleted from h1's member set: %s %q", r.Status, r.Detail)
		}
	}
}
