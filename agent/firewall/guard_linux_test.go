package firewall

import (
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// udpProbe listens on routerUp:4789 in the lab's router and sends to it
// from chosen source addresses of the outside namespace.
type udpProbe struct {
	t    *testing.T
	l    lab
	conn *net.UDPConn
}

func newUDPProbe(t *testing.T, l lab) udpProbe {
	var conn *net.UDPConn
	err := kernel.InNetns(kerneltest.NetnsPath(l.router), func() error {
		var err error
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(routerUp+":4789")))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return udpProbe{t: t, l: l, conn: conn}
}

// arrivals sends three datagrams from each source and returns the sources
// the listener received from.
func (p udpProbe) arrivals(srcs ...netip.Addr) map[netip.Addr]bool {
	for _, src := range srcs {
		err := kernel.InNetns(kerneltest.NetnsPath(p.l.outside), func() error {
			c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
				net.UDPAddrFromAddrPort(netip.MustParseAddrPort(routerUp+":4789")))
			if err != nil {
				return err
			}
			defer c.Close()
			for range 3 {
				if _, err := c.Write(append([]byte{8, 0, 0, 0, 0, 0x10, 0x75, 0}, make([]byte, 64)...)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			p.t.Fatal(err)
		}
	}
	seen := map[netip.Addr]bool{}
	buf := make([]byte, 2048)
	for {
		_ = p.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return seen
		}
		seen[from.Addr().Unmap()] = true
	}
}

// agentEnsure runs what the agent runs (EnsureAll).
func agentEnsure(t *testing.T, o Options) {
	t.Helper()
	if err := EnsureAll(o, 4789); err != nil {
		t.Fatal(err)
	}
}

// filterInput reports whether iptables-save output has a filter table with
// an INPUT chain.
func filterInput(save string) bool {
	_, filter, ok := strings.Cut(save, "*filter\n")
	filter, _, _ = strings.Cut(filter, "COMMIT")
	return ok && strings.Contains(filter, ":INPUT ")
}

// guardLab is the lab with the agent's rules for VXLAN's port, one member
// (clusterHost) and a stranger (worldAddr) on the outside.
func guardLab(t *testing.T, masq bool) (l lab, o Options, member, stranger netip.Addr) {
	t.Helper()
	l = newLab(t)
	member, stranger = netip.MustParseAddr(clusterHost), netip.MustParseAddr(worldAddr)
	o = l.opts(masq)
	o.TunnelPorts, o.Members, o.TunnelLocal, o.OnlyWhenNeeded = []uint16{4789}, []netip.Addr{member}, netip.MustParseAddr(routerUp), true
	agentEnsure(t, o)
	t.Cleanup(func() { _ = Remove(o); _ = RemoveNoTrack(o) })
	return l, o, member, stranger
}

// TestFmwTunnelGuardInRaw: with masquerade (conntrack in use) the member
// check of the tunnel port lives in raw PREROUTING, before conntrack: filter
// has no FLATMESH-INPUT, members' packets arrive untracked, a stranger's are
// dropped (and counted) in raw, a member change moves both, and Check and
// CheckNoTrack see nothing to do.
func TestFmwTunnelGuardInRaw(t *testing.T) {
	if _, err := os.Stat("/proc/net/nf_conntrack"); err != nil {
		t.Skip("no /proc/net/nf_conntrack (nf_conntrack not loaded): cannot observe the connection table")
	}
	l, o, member, stranger := guardLab(t, true)
	p := newUDPProbe(t, l)
	if seen := p.arrivals(member, stranger); !seen[member] || seen[stranger] {
		t.Fatalf("to port 4789 arrived from %v; want the member %s only", seen, member)
	}
	save := iptablesSave(t, l.router, "iptables-save")
	if strings.Contains(save, ":"+InputChain) {
		t.Fatalf("FLATMESH-INPUT beside the raw guard:\n%s", save)
	}
	for _, r := range guardRules(o, IPv4, o.TunnelPorts) {
		if !strings.Contains(save, "-A "+NoTrackChain+" "+r+"\n") {
			t.Fatalf("raw guard rule %q missing:\n%s", r, save)
		}
	}
	raw := kerneltest.NsRun(t, l.router, "iptables", "-t", "raw", "-n", "-v", "-x", "-L", NoTrackChain)
	if !regexp.MustCompile(`(?m)^\s*[1-9]\d*\s+\d+\s+DROP\s.*dpt:4789`).MatchString(raw) {
		t.Fatalf("the stranger's packets were not dropped in raw:\n%s", raw)
	}
	if ct := kerneltest.NsRun(t, l.router, "cat", "/proc/net/nf_conntrack"); strings.Contains(ct, "dport=4789") {
		t.Errorf("the member's tunnel packets were tracked:\n%s", ct)
	}
	if filterInput(save) {
		t.Errorf("filter INPUT exists (made for a FLATMESH-INPUT that was removed again: a hook per packet for nothing):\n%s", save)
	}
	// A member change is a change of the member set: no rule written, no
	// FLATMESH-INPUT made and removed again.
	var logged strings.Builder
	o.Logger = hclog.New(&hclog.LoggerOptions{Output: &logged, Level: hclog.Info})
	o.Members = []netip.Addr{stranger}
	agentEnsure(t, o)
	if n := strings.Count(logged.String(), "firewall rules updated"); n != 0 {
		t.Errorf("a member change wrote the rules %d times, want none (the set changes):\n%s", n, logged.String())
	}
	if save := iptablesSave(t, l.router, "iptables-save"); filterInput(save) {
		t.Errorf("filter INPUT exists after a member change:\n%s", save)
	}
	if seen := p.arrivals(member, stranger); seen[member] || !seen[stranger] {
		t.Fatalf("after the member change, 4789 arrived from %v; want %s only", seen, stranger)
	}
	if p1, err := Check(o); err != nil || len(p1) != 0 {
		t.Errorf("Check: %q, %v", p1, err)
	}
	if p2, err := CheckNoTrack(o, 4789); err != nil || len(p2) != 0 {
		t.Errorf("CheckNoTrack: %q, %v", p2, err)
	}
}

// TestFmwTunnelGuardInFilterWithoutConntrack: without masquerade or any
// other conntrack user the raw chain is not installed (it would only cost)
// and FLATMESH-INPUT keeps strangers off the port.
func TestFmwTunnelGuardInFilterWithoutConntrack(t *testing.T) {
	l, o, member, stranger := guardLab(t, false)
	if p, err := Check(o); err != nil || len(p) != 0 {
		t.Errorf("Check: %q, %v", p, err)
	}
	save := iptablesSave(t, l.router, "iptables-save")
	if !strings.Contains(save, "-A INPUT -j "+InputChain) || strings.Contains(save, NoTrackChain) {
		t.Fatalf("want FLATMESH-INPUT and no raw chain:\n%s", save)
	}
	if seen := newUDPProbe(t, l).arrivals(member, stranger); !seen[member] || seen[stranger] {
		t.Fatalf("to port 4789 arrived from %v; want the member %s only", seen, member)
	}
}
