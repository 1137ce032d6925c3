package dns

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// fakeUpstream is a tiny authoritative server on loopback: "up.example."
// has one A record, "big.example." more than fits in 512 bytes (so UDP
// answers are truncated), everything else is NXDOMAIN. delay slows every
// answer down.
type fakeUpstream struct {
	addr  netip.AddrPort
	udp   *mdns.Server
	tcp   *mdns.Server
	seen  chan string // "udp NAME" / "tcp NAME" per query (buffered, never blocks)
	delay time.Duration
}

func startUpstream(t testing.TB, delay time.Duration) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{seen: make(chan string, 1024), delay: delay}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	tl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	u.addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	u.udp = &mdns.Server{PacketConn: pc, Handler: u.handler("udp")}
	u.tcp = &mdns.Server{Listener: tl, Handler: u.handler("tcp")}
	for _, s := range []*mdns.Server{u.udp, u.tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
	}
	t.Cleanup(func() { _ = u.udp.Shutdown(); _ = u.tcp.Shutdown() })
	return u
}

func (u *fakeUpstream) handler(proto string) mdns.HandlerFunc {
	return func(w mdns.ResponseWriter, r *mdns.Msg) {
		if u.delay > 0 {
			time.Sleep(u.delay)
		}
		name := r.Question[0].Name
		select {
		case u.seen <- proto + " " + name:
		default:
		}
		m := new(mdns.Msg).SetReply(r)
		switch name {
		case "up.example.":
			m.Answer = append(m.Answer, mustRR("up.example. 60 IN A 192.0.2.7"))
		case "big.example.":
			for i := 0; i < 60; i++ {
				m.Answer = append(m.Answer, mustRR(fmt.Sprintf("big.example. 60 IN A 192.0.2.%d", i+1)))
			}
		default:
			m.Rcode = mdns.RcodeNameError
		}
		size := mdns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		if proto == "tcp" {
			size = mdns.MaxMsgSize
		}
		m.Truncate(size)
		_ = w.WriteMsg(m)
	}
}

func mustRR(s string) mdns.RR {
	rr, err := mdns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return rr
}

// startServer runs a handler on 127.0.0.1 with a fresh port and returns
// the address. Loopback is allowed unless allow says otherwise.
func startServer(t testing.TB, h *Handler) netip.AddrPort {
	t.Helper()
	s := NewServer(ServerOptions{Handler: h, Port: 0})
	if err := s.SetAddrs([]netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s.Addrs()[0]
}

func ask(t testing.TB, server netip.AddrPort, proto, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: proto, Timeout: 5 * time.Second}
	m := new(mdns.Msg).SetQuestion(mdns.Fqdn(name), qtype)
	r, _, err := c.Exchange(m, server.String())
	if err != nil {
		t.Fatalf("%s %s: %v", proto, name, err)
	}
	return r
}
