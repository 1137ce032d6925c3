package doctor

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// healthy is a vxlan host whose every check passes.
func healthy() Facts {
	return Facts{
		Mode: "vxlan", Iface: "eth1", Bridge: "flatmesh0", DataPort: 4789,
		UnderlayMTU: 1500, PlaneMTU: 1450, BridgeMTU: 1450,
		Forwarding: "1", BrNetfilter: "1", ForwardPolicy: "DROP", ForwardJump: true,
		Peers: []Peer{
			{Name: "a", Addr: netip.MustParseAddr("10.0.0.1"), Port: 7496, Underlay: netip.MustParseAddr("10.0.0.1"), State: "alive", Self: true},
			peer("b", "10.0.0.2", 20*time.Millisecond),
			peer("c", "10.0.0.3", -30*time.Millisecond),
		},
		MemberSet:       []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")},
		MemberSetExists: true,
		StateDir:        PathInfo{Path: "/var/lib/flatmesh", Exists: true, Mode: fs.ModeDir | 0o700},
		Socket:          PathInfo{Path: "/run/flatmesh/flatmesh.sock", Exists: true, Mode: fs.ModeSocket | 0o600},
		SocketDir:       PathInfo{Path: "/run/flatmesh", Exists: true, Mode: fs.ModeDir | 0o755},
	}
}

func peer(name, addr string, skew time.Duration) Peer {
	a := netip.MustParseAddr(addr)
	ok := Probe{Tried: true, OK: true}
	return Peer{Name: name, Addr: a, Port: 7496, Underlay: a, State: "alive", GossipTCP: ok, DataPlane: ok, Skew: skew, SkewOK: true}
}

func result(t *testing.T, r Report, check string) Result {
	t.Helper()
	for _, c := range r.Checks {
		if c.Check == check {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", check, r)
	return Result{}
}

func TestHealthyHost(t *testing.T) {
	r := Check(healthy())
	if !r.OK {
		t.Fatalf("a healthy host fails: %+v", r)
	}
	for _, c := range r.Checks {
		if c.Status != OK && c.Check != "nic-manager" {
			t.Errorf("%s: %s %s", c.Check, c.Status, c.Detail)
		}
	}
}

// Each broken fact fails (or warns on) exactly the check that owns it, and
// says what to do.
func TestEachProblemIsFound(t *testing.T) {
	cases := []struct {
		check  string
		status Status
		want   string
		breakf func(f *Facts)
	}{
		{"agent", Fail, "does not answer", func(f *Facts) { f.AgentErr = "connection refused"; f.Peers = nil }},
		{"agent", Fail, "configuration", func(f *Facts) { f.ConfigErr = "bad mode" }},
		{"mtu", Fail, "set mtu = 1350", func(f *Facts) { f.UnderlayMTU = 1400 }},
		{"mtu", Fail, "overhead 60", func(f *Facts) { f.Mode = "wireguard"; f.PlaneMTU = 1450 }},
		{"mtu", Warn, "bridge flatmesh0 has MTU 1500", func(f *Facts) { f.BridgeMTU = 1500 }},
		{"mtu", Warn, "underlay MTU changed", func(f *Facts) { f.UnderlayMTU = 9000 }},
		{"forwarding", Fail, "ip_forward", func(f *Facts) { f.Forwarding = "0" }},
		{"forwarding", Warn, "LAN segment", func(f *Facts) { f.Forwarding = "0"; f.Mode = "flat" }},
		{"firewall", Fail, "dropped", func(f *Facts) { f.ForwardJump = false }},
		{"tunnel-guard", Fail, "lacks c (10.0.0.3)", func(f *Facts) { f.MemberSet = f.MemberSet[:1] }},
		{"tunnel-guard", Fail, "is missing", func(f *Facts) { f.MemberSet, f.MemberSetExists = nil, false }},
		{"tunnel-guard", Warn, "modprobe ip_set_hash_ip", func(f *Facts) { f.MemberSetErr = "operation not permitted" }},
		{"tunnel-guard", OK, "every live member among them (1)", func(f *Facts) { f.MemberSet = f.MemberSet[:1]; f.Peers[2].State = "failed" }},
		{"members", Fail, "b (gossip 10.0.0.2:7496/tcp: connection refused", func(f *Facts) {
			f.Peers[1].GossipTCP = Probe{Tried: true, Detail: "connection refused"}
		}},
		{"members", Fail, "vxlan 10.0.0.3:4789/udp", func(f *Facts) {
			f.Peers[2].DataPlane = Probe{Tried: true, Detail: "ICMP port unreachable"}
		}},
		{"members", Warn, "c suspect", func(f *Facts) { f.Peers[2].State = "suspect" }},
		{"members", Warn, "alone", func(f *Facts) { f.Peers = f.Peers[:1] }},
		{"advertise", Fail, "10.0.0.2 used by b and c", func(f *Facts) {
			f.Peers[2].Addr, f.Peers[2].Underlay = f.Peers[1].Addr, f.Peers[1].Addr
		}},
		{"nic-manager", Fail, "NetworkManager manages eth1", func(f *Facts) {
			f.Mode, f.Bridge, f.DataPort, f.PlaneMTU, f.BridgeMTU = "flat", "fmbr0", 0, 1500, 1500
			f.Managers = []NICManager{{Manager: "NetworkManager", Iface: "eth1", Managed: true, Detail: "connected"}}
		}},
		{"clock", Fail, "3s (b)", func(f *Facts) { f.Peers[1].Skew = 3 * time.Second }},
		{"clock", Warn, "-800ms (c)", func(f *Facts) { f.Peers[2].Skew = -800 * time.Millisecond }},
		{"clock", Warn, "skew unknown: b (no ICMP timestamp reply), c", func(f *Facts) {
			f.Peers[1].SkewOK, f.Peers[1].SkewErr = false, "no ICMP timestamp reply"
			f.Peers[2].SkewOK = false
		}},
		{"clock", OK, "unknown for c (opening a raw ICMP socket: operation not permitted)", func(f *Facts) {
			f.Peers[2].SkewOK, f.Peers[2].SkewErr = false, "opening a raw ICMP socket: operation not permitted"
		}},
		{"members", OK, "2 reachable on gossip tcp: b, c", func(f *Facts) {
			f.Mode, f.DataPort = "flat", 0
			f.Peers[1].DataPlane, f.Peers[2].DataPlane = Probe{}, Probe{}
		}},
		{"state-dir", Fail, "mode 0755", func(f *Facts) { f.StateDir.Mode = fs.ModeDir | 0o755 }},
		{"state-dir", Fail, "uid 1000", func(f *Facts) { f.StateDir.UID = 1000 }},
		{"socket", Fail, "others can drive the agent", func(f *Facts) { f.Socket.Mode = fs.ModeSocket | 0o666 }},
		{"socket", Fail, "replace the agent's socket", func(f *Facts) { f.SocketDir.Mode = fs.ModeDir | 0o777 }},
		{"socket", Fail, "not a socket", func(f *Facts) { f.Socket.Mode = 0o600 }},
	}
	for _, c := range cases {
		t.Run(c.check+"/"+c.want, func(t *testing.T) {
			f := healthy()
			f.Peers = append([]Peer(nil), f.Peers...)
			c.breakf(&f)
			r := Check(f)
			got := result(t, r, c.check)
			if got.Status != c.status || !strings.Contains(got.Detail+" "+got.Fix, c.want) {
				t.Fatalf("%s: got %s %q (fix %q); want %s containing %q", c.check, got.Status, got.Detail, got.Fix, c.status, c.want)
			}
			if got.Status != OK && got.Fix == "" && got.Status != Skip {
				t.Errorf("%s %s without a fix", c.check, got.Status)
			}
			if r.OK != (c.status != Fail) && c.check != "agent" {
				t.Errorf("report ok=%v with %s %s", r.OK, c.check, got.Status)
			}
		})
	}
}

func TestReportOutput(t *testing.T) {
	f := healthy()
	f.Forwarding = "0"
	r := Check(f)
	var table, js bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(table.String(), "\n")
	col := strings.Index(lines[0], "STATUS")
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "forwarding") && !strings.HasPrefix(l[col:], "FAIL") {
			t.Errorf("status column not aligned: %q", l)
		}
	}
	if !strings.Contains(table.String(), "fix: start the agent") || !strings.Contains(table.String(), "problems: forwarding") {
		t.Errorf("table:\n%s", table.String())
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.OK || len(back.Checks) != len(r.Checks) {
		t.Fatalf("json round trip: %v %+v", err, back)
	}
	if !strings.Contains(js.String(), `"check": "forwarding"`) || !strings.Contains(js.String(), `"status": "FAIL"`) {
		t.Errorf("json:\n%s", js.String())
	}
}

func TestParseForward(t *testing.T) {
	out := "-P FORWARD DROP\n-A FORWARD -m comment --comment \"flatmesh\" -j FLATMESH-FORWARD\n-A FORWARD -j DOCKER-USER\n"
	p, j, err := ParseForward(out, "FLATMESH-FORWARD")
	if err != nil || p != "DROP" || !j {
		t.Fatalf("%q %v %v", p, j, err)
	}
	p, j, err = ParseForward("-P FORWARD ACCEPT\n-A FORWARD -j DOCKER-USER\n", "FLATMESH-FORWARD")
	if err != nil || p != "ACCEPT" || j {
		t.Fatalf("%q %v %v", p, j, err)
	}
	if _, _, err := ParseForward("garbage", "X"); err == nil {
		t.Fatal("no policy accepted")
	}
}

func TestParseManagers(t *testing.T) {
	nm := "lo:unmanaged\neth0:connected\neth1:unmanaged\nfmbr0:connecting (getting IP configuration)\n"
	for ifc, want := range map[string]bool{"eth0": true, "eth1": false, "fmbr0": true} {
		if m, found, _ := ParseNmcli(nm, ifc); !found || m != want {
			t.Errorf("%s: managed %v found %v", ifc, m, found)
		}
	}
	if _, found, _ := ParseNmcli(nm, "eth9"); found {
		t.Error("eth9 found")
	}
	if m, st := ParseNetworkdLink("# This is private data.\nADMIN_STATE=configured\nOPER_STATE=routable\n"); !m || st != "configured" {
		t.Errorf("configured: %v %q", m, st)
	}
	if m, _ := ParseNetworkdLink("ADMIN_STATE=unmanaged\n"); m {
		t.Error("unmanaged counted as managed")
	}
}

func TestICMPTimestamp(t *testing.T) {
	now := time.Date(2026, 11, 29, 23, 59, 59, 990e6, time.UTC)
	req := timestampRequest(7, 1, now)
	if len(req) != 20 || req[0] != 13 || checksum(req) != 0 {
		t.Fatalf("bad request % x (checksum over it %x)", req, checksum(req))
	}
	// A reply as a kernel builds it.
	rep := append([]byte(nil), req...)
	rep[0] = 14
	copy(rep[12:16], []byte{0, 0, 0, 5}) // received 5 ms after midnight: +15 ms
	copy(rep[16:20], []byte{0, 0, 0, 5})
	r, err := parseTimestampReply(rep)
	if err != nil || r.id != 7 || r.originate != msOfDay(now) {
		t.Fatalf("%+v %v", r, err)
	}
	// Our clock read 23:59:59.990 when sending and .992 on receipt; theirs
	// 00:00:00.005 both times: about 14 ms ahead across midnight.
	if got := skew(r.originate, r.receive, r.transmit, msOfDay(now.Add(2*time.Millisecond))); got != 14*time.Millisecond {
		t.Fatalf("skew %v, want 14ms", got)
	}
	if got := skew(1000, 500, 500, 1000); got != -500*time.Millisecond {
		t.Fatalf("skew %v", got)
	}
	for _, bad := range [][]byte{rep[:10], append([]byte{0}, rep[1:]...)} {
		if _, err := parseTimestampReply(bad); err == nil {
			t.Errorf("accepted % x", bad)
		}
	}
}

// Probes against real sockets on loopback: a listener, a closed port.
func TestProbesOnLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	lo := netip.MustParseAddr("127.0.0.1")
	port := ln.Addr().(*net.TCPAddr).Port
	if p := probeTCP(t.Context(), lo, port, time.Second); !p.OK || !p.Tried {
		t.Fatalf("open tcp: %+v", p)
	}
	ln.Close()
	if p := probeTCP(t.Context(), lo, port, time.Second); p.OK || !strings.Contains(p.Detail, "refused") {
		t.Fatalf("closed tcp: %+v", p)
	}
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	uport := u.LocalAddr().(*net.UDPAddr).Port
	if p := probeUDP(lo, uport, 400*time.Millisecond); !p.OK {
		t.Fatalf("open udp: %+v", p)
	}
	u.Close()
	if p := probeUDP(lo, uport, 400*time.Millisecond); p.OK || !strings.Contains(p.Detail, "port unreachable") {
		t.Fatalf("closed udp: %+v", p)
	}
	if p := probeUDP(netip.Addr{}, 0, time.Second); p.Tried {
		t.Fatal("probe without an address was tried")
	}
}
