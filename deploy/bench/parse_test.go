package main

import (
	"math"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func TestParseIperf(t *testing.T) {
	b, err := os.ReadFile("testdata/iperf3-p2.json") // iperf3 3.12, -P 2 -t 1, loopback
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseIperf(b)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.Gbps-13.169270423135695) > 1e-9 || r.Retransmits != 3 {
		t.Fatalf("parsed %+v, want 13.169 Gbit/s received and 3 retransmits (the sums over both streams)", r)
	}
	if r.SentGbps < r.Gbps || r.CPUHost <= 0 {
		t.Fatalf("sent %v, host cpu %v", r.SentGbps, r.CPUHost)
	}
}

func TestParseIperfErrors(t *testing.T) {
	b, err := os.ReadFile("testdata/iperf3-error.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseIperf(b); err == nil || !strings.Contains(err.Error(), "Connection refused") {
		t.Fatalf("want iperf3's own error, got %v", err)
	}
	if _, err := parseIperf([]byte("iperf3: error - unable to start")); err == nil {
		t.Fatal("text output must be an error")
	}
	if _, err := parseIperf([]byte(`{"end": {"sum_received": {"bits_per_second": 0}}}`)); err == nil {
		t.Fatal("a run that received nothing must be an error")
	}
}

func TestParsePingSummary(t *testing.T) {
	b, err := os.ReadFile("testdata/ping-summary.txt")
	if err != nil {
		t.Fatal(err)
	}
	s, err := parsePingSummary(string(b))
	if err != nil || s.Sent != 3 || s.Received != 3 || s.AvgMs != 0.050 {
		t.Fatalf("got %+v, %v", s, err)
	}
	s, err = parsePingSummary("--- x ping statistics ---\n5 packets transmitted, 0 received, +5 errors, 100% packet loss, time 40ms\n")
	if err != nil || s.Sent != 5 || s.Received != 0 || s.AvgMs != 0 {
		t.Fatalf("no replies: %+v, %v", s, err)
	}
	if _, err := parsePingSummary("ping: connect: Network is unreachable\n"); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("no summary: %v", err)
	}
}

func TestReplySeqAndLosses(t *testing.T) {
	out := `PING 172.16.44.252 (172.16.44.252) 56(84) bytes of data.
64 bytes from 172.16.44.252: icmp_seq=1 ttl=64 time=0.061 ms
64 bytes from 172.16.44.252: icmp_seq=2 ttl=64 time=0.050 ms
64 bytes from 172.16.44.252: icmp_seq=2 ttl=64 time=0.090 ms (DUP!)
From 172.16.0.1 icmp_seq=3 Destination Host Unreachable
64 bytes from 172.16.44.252: icmp_seq=5 ttl=64 time=0.044 ms
64 bytes from 172.16.44.252: icmp_seq=6 ttl=64 time=0.044 ms
`
	replied := map[int]bool{}
	for _, line := range strings.Split(out, "\n") {
		if seq, ok := replySeq(line); ok {
			replied[seq] = true
		}
	}
	if len(replied) != 4 || replied[3] || replied[4] {
		t.Fatalf("replies %v", replied)
	}
	// 3 and 4 lost; anything sent after 6 is in flight and not counted.
	if sent, lost := pingLosses(replied); sent != 6 || lost != 2 {
		t.Fatalf("sent %d lost %d, want 6 and 2", sent, lost)
	}
	if sent, lost := pingLosses(nil); sent != 0 || lost != 0 {
		t.Fatalf("no replies: %d %d", sent, lost)
	}
}

func TestParseEthtoolFeature(t *testing.T) {
	out := `Features for flatmesh.vx:
rx-checksumming: on
tx-checksumming: off
	tx-checksum-ip-generic: off
tx-lockless: on [fixed]
`
	for _, c := range []struct {
		name   string
		on, ok bool
	}{
		{"tx-checksumming", false, true},
		{"rx-checksumming", true, true},
		{"tx-lockless", true, true},
		{"tx-checksum-ip-generic", false, true},
		{"scatter-gather", false, false},
	} {
		on, ok := parseEthtoolFeature(out, c.name)
		if on != c.on || ok != c.ok {
			t.Errorf("%s: got %v %v, want %v %v", c.name, on, ok, c.on, c.ok)
		}
	}
}

func TestRouteDstsCovered(t *testing.T) {
	out := `default via 10.213.0.1 dev eth0 proto 95
10.213.255.192/26 via 10.213.255.193 dev flatmesh.vx proto 95 src 10.213.0.1 onlink
10.213.4.0/23 via 10.213.4.1 dev flatmesh.vx proto 95 src 10.213.0.1 onlink
10.213.9.9 dev flatmesh.vx proto 95 scope link
`
	dsts := routeDsts(out)
	if len(dsts) != 3 {
		t.Fatalf("dsts %v (the default route must be left out)", dsts)
	}
	for a, want := range map[string]bool{
		"10.213.255.200": true, "10.213.5.77": true, "10.213.9.9": true,
		"10.213.9.10": false, "10.213.0.5": false, "192.0.2.1": false,
	} {
		if got := covered(dsts, netip.MustParseAddr(a)); got != want {
			t.Errorf("covered(%s) = %v, want %v", a, got, want)
		}
	}
}

func TestRenameLinks(t *testing.T) {
	in := `*filter
:FLATMESH-FORWARD - [0:0]
-A FORWARD -m comment --comment "flatmesh: container forwarding" -j FLATMESH-FORWARD
-A FLATMESH-FORWARD -i flatmesh0 -j ACCEPT
-A FLATMESH-FORWARD -o flatmesh.vx -j ACCEPT
-A FLATMESH-POSTROUTING -s 10.213.0.0/16 ! -o flatmesh0 -j MASQUERADE
-A X -m comment --comment flatmesh0 -j ACCEPT
COMMIT`
	want := `*filter
:FLATMESH-FORWARD - [0:0]
-A FORWARD -m comment --comment "flatmesh: container forwarding" -j FLATMESH-FORWARD
-A FLATMESH-FORWARD -i br0 -j ACCEPT
-A FLATMESH-FORWARD -o vx0 -j ACCEPT
-A FLATMESH-POSTROUTING -s 10.213.0.0/16 ! -o br0 -j MASQUERADE
-A X -m comment --comment flatmesh0 -j ACCEPT
COMMIT`
	if got := renameLinks(in, map[string]string{"flatmesh0": "br0", "flatmesh.vx": "vx0"}); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestPerMemberGuard(t *testing.T) {
	save := "*raw\n:FLATMESH-NOTRACK - [0:0]\n" +
		"-A FLATMESH-NOTRACK -d 10.99.0.1/32 -p udp -m udp --dport 4789 -j CT --notrack\n" +
		"-A FLATMESH-NOTRACK -p udp -m udp --dport 4789 -m set --match-set flatmesh-members src -j RETURN\n" +
		"-A FLATMESH-NOTRACK -p udp -m udp --dport 4789 -m addrtype --dst-type LOCAL -j DROP\nCOMMIT\n"
	members := append(fakeMembers(2), netip.MustParseAddr("10.99.0.2"))
	want := "*raw\n:FLATMESH-NOTRACK - [0:0]\n" +
		"-A FLATMESH-NOTRACK -d 10.99.0.1/32 -p udp -m udp --dport 4789 -j CT --notrack\n" +
		"-A FLATMESH-NOTRACK -s 198.18.1.1/32 -p udp -m udp --dport 4789 -j RETURN\n" +
		"-A FLATMESH-NOTRACK -s 198.18.1.2/32 -p udp -m udp --dport 4789 -j RETURN\n" +
		"-A FLATMESH-NOTRACK -s 10.99.0.2/32 -p udp -m udp --dport 4789 -j RETURN\n" +
		"-A FLATMESH-NOTRACK -p udp -m udp --dport 4789 -m addrtype --dst-type LOCAL -j DROP\nCOMMIT\n"
	if got := perMemberGuard(save, members); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if f := fakeMembers(251); f[250] != netip.MustParseAddr("198.18.2.1") {
		t.Fatalf("fake member 251: %s", f[250])
	}
}
