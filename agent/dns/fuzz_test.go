package dns

import (
	"net"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// recorder is a ResponseWriter that keeps what was written.
type recorder struct {
	remote net.Addr
	out    *mdns.Msg
}

func (r *recorder) LocalAddr() net.Addr         { return &net.UDPAddr{IP: net.IPv4(10, 213, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr        { return r.remote }
func (r *recorder) WriteMsg(m *mdns.Msg) error  { r.out = m; _, err := m.Pack(); return err }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) Close() error                { return nil }
func (r *recorder) TsigStatus() error           { return nil }
func (r *recorder) TsigTimersOnly(bool)         {}
func (r *recorder) Hijack()                     {}

var _ mdns.ResponseWriter = (*recorder)(nil)

// FuzzHandler feeds arbitrary packets through the handler the way the
// server does (unpack, then ServeDNS, without the server's own filter of
// odd headers) from an allowed and an outside
// source, over "UDP" and "TCP": it must never panic, must answer the
// outsider only with REFUSED (or not at all), and every answer must pack.
// Run longer with: go test -run XXX -fuzz FuzzHandler -fuzztime 30s ./agent/dns/
func FuzzHandler(f *testing.F) {
	up := startUpstream(f, 0)
	h := NewHandler(HandlerOptions{Forwarder: NewForwarder(ForwarderOptions{Static: []netip.AddrPort{up.addr}}), Rate: -1})
	h.SetTable(testTable())
	h.SetAllowed([]netip.Prefix{netip.MustParsePrefix("10.213.0.0/16")})
	for _, seed := range []*mdns.Msg{
		new(mdns.Msg).SetQuestion("web.flatmesh.", mdns.TypeA),
		new(mdns.Msg).SetQuestion("2.0.213.10.in-addr.arpa.", mdns.TypePTR),
		new(mdns.Msg).SetQuestion("up.example.", mdns.TypeAAAA),
		new(mdns.Msg).SetQuestion("flatmesh.", mdns.TypeANY),
		new(mdns.Msg).SetEdns0(4096, true),
	} {
		b, err := seed.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, byte(0))
	}
	f.Add([]byte{0, 1, 2}, byte(3))
	f.Fuzz(func(t *testing.T, pkt []byte, who byte) {
		m := new(mdns.Msg)
		if err := m.Unpack(pkt); err != nil {
			return // the server drops what does not unpack
		}
		ip := net.IPv4(10, 213, 0, 9)
		if who&1 == 1 {
			ip = net.IPv4(192, 0, 2, 50)
		}
		var remote net.Addr = &net.UDPAddr{IP: ip, Port: 4000}
		if who&2 == 2 {
			remote = &net.TCPAddr{IP: ip, Port: 4000}
		}
		w := &recorder{remote: remote}
		h.ServeDNS(w, m)
		if w.out == nil {
			return
		}
		if _, err := w.out.Pack(); err != nil {
			t.Fatalf("answer does not pack: %v", err)
		}
		if who&1 == 1 && !m.Response && w.out.Rcode == mdns.RcodeSuccess {
			t.Fatalf("an outsider got an answer: %v", w.out)
		}
	})
}
