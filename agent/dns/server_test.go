package dns

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestServerStopsWithoutTheReadDeadline: the UDP listener's read deadline
// is long (udpReadWait, so an idle agent is not woken to renew it); a
// listener taken away must still stop at once and free its port, and
// queries after a long quiet spell are still answered.
func TestServerStopsWithoutTheReadDeadline(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 127.0.0.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := NewHandler(HandlerOptions{Forwarder: NewForwarder(ForwarderOptions{ResolvConf: rc})})
	h.SetAllowed(loopback)
	s := NewServer(ServerOptions{Handler: h, Port: 0})
	t.Cleanup(s.Close)
	lo := netip.MustParseAddr("127.0.0.1")
	if err := s.SetAddrs([]netip.Addr{lo}); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()[0]
	if r := ask(t, addr, "udp", "up.example", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("rcode %d, want SERVFAIL", r.Rcode)
	}
	start := time.Now()
	if err := s.SetAddrs(nil); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("stopping the listener took %v: it waited for the read deadline", took)
	}
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatalf("the stopped listener still holds udp %s: %v", addr, err)
	}
	pc.Close()
}
