package dns

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func TestHandlerClusterNamesAndForwarding(t *testing.T) {
	up := startUpstream(t, 0)
	h := NewHandler(HandlerOptions{Forwarder: NewForwarder(ForwarderOptions{Static: []netip.AddrPort{up.addr}})})
	h.SetTable(testTable())
	h.SetAllowed(loopback)
	srv := startServer(t, h)

	for _, proto := range []string{"udp", "tcp"} {
		r := ask(t, srv, proto, "web.flatmesh", mdns.TypeA)
		if r.Rcode != mdns.RcodeSuccess || !r.Authoritative || !slices.Equal(aAddrs(r.Answer), []string{"10.213.0.3", "10.213.0.66"}) {
			t.Errorf("%s web.flatmesh: %v", proto, r)
		}
		if r := ask(t, srv, proto, "gone.flatmesh", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
			t.Errorf("%s gone.flatmesh: rcode %d, want NXDOMAIN", proto, r.Rcode)
		}
		r = ask(t, srv, proto, "up.example", mdns.TypeA)
		if r.Rcode != mdns.RcodeSuccess || !slices.Equal(aAddrs(r.Answer), []string{"192.0.2.7"}) || r.Authoritative {
			t.Errorf("%s forwarded up.example: %v", proto, r)
		}
	}
	// NXDOMAIN for our zone is answered here: the upstream never hears of it.
	drain(up.seen)
	ask(t, srv, "udp", "gone.flatmesh", mdns.TypeA)
	ask(t, srv, "udp", "2.0.213.10.in-addr.arpa", mdns.TypePTR)
	if s := drain(up.seen); len(s) != 0 {
		t.Errorf("cluster names reached the upstream: %v", s)
	}
	// A truncated upstream answer is fetched again over TCP; the client on
	// UDP gets it truncated (and retries over TCP itself).
	r := ask(t, srv, "tcp", "big.example", mdns.TypeA)
	if len(r.Answer) != 60 {
		t.Errorf("big.example over TCP: %d answers, want 60", len(r.Answer))
	}
	if s := drain(up.seen); !slices.Contains(s, "udp big.example.") || !slices.Contains(s, "tcp big.example.") {
		t.Errorf("upstream saw %v, want a UDP try then TCP", s)
	}
	c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(new(mdns.Msg).SetQuestion("big.example.", mdns.TypeA), srv.String())
	if err != nil || !r.Truncated {
		t.Errorf("big.example over UDP without EDNS0: truncated=%v err=%v", r != nil && r.Truncated, err)
	}
	if h.Stats.Forwarded.Load() == 0 || h.Stats.Answered.Load() == 0 {
		t.Errorf("stats did not count: %+v", &h.Stats)
	}
}

func drain(c chan string) []string {
	var out []string
	for {
		select {
		case s := <-c:
			out = append(out, s)
		case <-time.After(100 * time.Millisecond):
			return out
		}
	}
}

func TestHandlerRefusesOutsiders(t *testing.T) {
	up := startUpstream(t, 0)
	h := NewHandler(HandlerOptions{Forwarder: NewForwarder(ForwarderOptions{Static: []netip.AddrPort{up.addr}})})
	h.SetTable(testTable())
	h.SetAllowed([]netip.Prefix{netip.MustParsePrefix("10.213.0.0/16")}) // loopback is not a container
	srv := startServer(t, h)
	for _, name := range []string{"up.example", "web.flatmesh"} {
		if r := ask(t, srv, "udp", name, mdns.TypeA); r.Rcode != mdns.RcodeRefused || len(r.Answer) != 0 {
			t.Errorf("%s from an outsider: rcode %d answers %d, want REFUSED", name, r.Rcode, len(r.Answer))
		}
	}
	if s := drain(up.seen); len(s) != 0 {
		t.Errorf("an outsider's query reached the upstream: %v", s)
	}
}

func TestHandlerNoUpstream(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 127.0.0.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := NewHandler(HandlerOptions{Forwarder: NewForwarder(ForwarderOptions{ResolvConf: rc})})
	h.SetAllowed(loopback)
	srv := startServer(t, h)
	if r := ask(t, srv, "udp", "up.example", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("no usable upstream: rcode %d, want SERVFAIL", r.Rcode)
	}
}

func TestHandlerRateLimit(t *testing.T) {
	h := NewHandler(HandlerOptions{Rate: 0.001, Burst: 20})
	h.SetTable(testTable())
	h.SetAllowed(loopback)
	srv := startServer(t, h)
	c := &mdns.Client{Net: "udp", Timeout: 50 * time.Millisecond}
	ok := 0
	for i := 0; i < 60; i++ {
		if _, _, err := c.Exchange(new(mdns.Msg).SetQuestion("web.flatmesh.", mdns.TypeA), srv.String()); err == nil {
			ok++
		}
	}
	if ok < 15 || ok > 20 || h.Stats.Dropped.Load() == 0 {
		t.Errorf("a flood of 60 at burst 20: %d answered, %d dropped", ok, h.Stats.Dropped.Load())
	}
}

// TestHandlerBadInput sends garbage, a message that claims many questions,
// a response, and over TCP a length prefix of 65535 followed by junk and a
// connection that stalls: the server answers or drops, and keeps serving.
func TestHandlerBadInput(t *testing.T) {
	h := NewHandler(HandlerOptions{})
	h.SetTable(testTable())
	h.SetAllowed(loopback)
	srv := startServer(t, h)
	u, err := net.Dial("udp", srv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	resp := new(mdns.Msg).SetQuestion("web.flatmesh.", mdns.TypeA)
	resp.Response = true
	rb, _ := resp.Pack()
	two := new(mdns.Msg).SetQuestion("web.flatmesh.", mdns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	tb, _ := two.Pack()
	for _, p := range [][]byte{{}, {0}, []byte("hello world, this is not dns"), make([]byte, 12), rb, tb, make([]byte, 4000)} {
		_, _ = u.Write(p)
	}
	tc, err := net.Dial("tcp", srv.String())
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 2+65535)
	binary.BigEndian.PutUint16(big, 65535)
	_, _ = tc.Write(big)
	tc.Close()
	stall, err := net.Dial("tcp", srv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	_, _ = stall.Write([]byte{0, 50, 1, 2})
	for _, proto := range []string{"udp", "tcp"} {
		if r := ask(t, srv, proto, "c11.flatmesh", mdns.TypeA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("%s after bad input: %v", proto, r)
		}
	}
}

func TestParseResolvConf(t *testing.T) {
	text := `# comment
nameserver 127.0.0.53
nameserver ::1
nameserver 192.0.2.1
search example.com
nameserver fe80::1%eth0
nameserver not-an-ip
nameserver 10.213.0.1
nameserver 192.0.2.2
nameserver 192.0.2.3
`
	skip := func(a netip.Addr) bool { return a == netip.MustParseAddr("10.213.0.1") }
	got := ParseResolvConf([]byte(text), skip)
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("fe80::1"), netip.MustParseAddr("192.0.2.2")}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestForwarderReReadsResolvConf(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := NewForwarder(ForwarderOptions{ResolvConf: rc})
	if got := f.Servers(); len(got) != 1 || got[0].String() != "192.0.2.1:53" {
		t.Fatalf("servers %v", got)
	}
	tmp := rc + ".new"
	if err := os.WriteFile(tmp, []byte("nameserver 192.0.2.9\nnameserver 192.0.2.10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, rc); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := f.Servers()
		if len(got) == 2 && got[0].String() == "192.0.2.9:53" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("servers still %v after the file changed", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := os.Remove(rc); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if got := f.Servers(); len(got) != 0 {
		t.Errorf("servers %v after the file was removed", got)
	}
}
