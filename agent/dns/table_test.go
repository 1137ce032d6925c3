package dns

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

var space = []netip.Prefix{netip.MustParsePrefix("10.213.0.0/16")}

func testTable() *Table {
	return NewTable("flatmesh", space, []Record{
		{"c11", netip.MustParseAddr("10.213.0.2")},
		{"Web", netip.MustParseAddr("10.213.0.3")},
		{"web", netip.MustParseAddr("10.213.0.66")}, // same name on another host
		{"api.shop", netip.MustParseAddr("10.213.0.67")},
		{"v6", netip.MustParseAddr("fd00::5")},
		{"bad name", netip.MustParseAddr("10.213.0.9")},
		{"-x", netip.MustParseAddr("10.213.0.10")},
	})
}

func q(name string, t uint16) mdns.Question {
	return mdns.Question{Name: mdns.Fqdn(name), Qtype: t, Qclass: mdns.ClassINET}
}

func aAddrs(rrs []mdns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *mdns.A:
			out = append(out, v.A.String())
		case *mdns.AAAA:
			out = append(out, v.AAAA.String())
		case *mdns.PTR:
			out = append(out, v.Ptr)
		}
	}
	return out
}

func TestTableForward(t *testing.T) {
	tb := testTable()
	cases := []struct {
		name  string
		qtype uint16
		ours  bool
		rcode int
		want  []string
	}{
		{"c11.flatmesh", mdns.TypeA, true, mdns.RcodeSuccess, []string{"10.213.0.2"}},
		{"C11.FlatMesh", mdns.TypeA, true, mdns.RcodeSuccess, []string{"10.213.0.2"}},
		{"web.flatmesh", mdns.TypeA, true, mdns.RcodeSuccess, []string{"10.213.0.3", "10.213.0.66"}},
		{"web.flatmesh", mdns.TypeAAAA, true, mdns.RcodeSuccess, nil}, // NODATA
		{"v6.flatmesh", mdns.TypeAAAA, true, mdns.RcodeSuccess, []string{"fd00::5"}},
		{"api.shop.flatmesh", mdns.TypeA, true, mdns.RcodeSuccess, []string{"10.213.0.67"}},
		{"shop.flatmesh", mdns.TypeA, true, mdns.RcodeSuccess, nil}, // empty non-terminal
		{"nope.flatmesh", mdns.TypeA, true, mdns.RcodeNameError, nil},
		{"bad.flatmesh", mdns.TypeA, true, mdns.RcodeNameError, nil},
		{"-x.flatmesh", mdns.TypeA, true, mdns.RcodeNameError, nil},
		{"flatmesh", mdns.TypeA, true, mdns.RcodeSuccess, nil},
		{"c11", mdns.TypeA, true, mdns.RcodeSuccess, []string{"10.213.0.2"}}, // bare name
		{"example.com", mdns.TypeA, false, 0, nil},
		{"nope", mdns.TypeA, false, 0, nil}, // bare unknown: forwarded
		{"c11.flatmesh.example.com", mdns.TypeA, false, 0, nil},
	}
	for _, c := range cases {
		res := tb.Lookup(q(c.name, c.qtype))
		if res.Ours != c.ours || res.Rcode != c.rcode || !slices.Equal(aAddrs(res.Answer), c.want) {
			t.Errorf("%s %s: ours=%v rcode=%d answer=%v, want %v %d %v", c.name, mdns.TypeToString[c.qtype],
				res.Ours, res.Rcode, aAddrs(res.Answer), c.ours, c.rcode, c.want)
		}
		if res.Ours && len(res.Answer) == 0 && (len(res.Ns) != 1 || res.Ns[0].Header().Ttl != TTL) {
			t.Errorf("%s: negative answer without the SOA: %v", c.name, res.Ns)
		}
		for _, rr := range res.Answer {
			if rr.Header().Ttl != TTL {
				t.Errorf("%s: TTL %d, want %d", c.name, rr.Header().Ttl, TTL)
			}
		}
	}
	if soa := tb.Lookup(q("flatmesh", mdns.TypeSOA)); len(soa.Answer) != 1 {
		t.Errorf("SOA of the zone: %v", soa.Answer)
	}
	if got := tb.Lookup(mdns.Question{Name: "c11.flatmesh.", Qtype: mdns.TypeA, Qclass: mdns.ClassCHAOS}); got.Ours {
		t.Errorf("a CHAOS query was answered from the table")
	}
}

func TestTableReverse(t *testing.T) {
	tb := testTable()
	rev := func(a string) string { r, _ := mdns.ReverseAddr(a); return r }
	cases := []struct {
		name  string
		ours  bool
		rcode int
		want  []string
	}{
		{rev("10.213.0.2"), true, mdns.RcodeSuccess, []string{"c11.flatmesh."}},
		{rev("10.213.0.3"), true, mdns.RcodeSuccess, []string{"web.flatmesh."}},
		{rev("10.213.0.99"), true, mdns.RcodeNameError, nil}, // in the space, unknown
		{rev("192.168.1.1"), false, 0, nil},                  // outside: forwarded
		{rev("fd00::5"), false, 0, nil},                      // outside the space
		{"213.10.in-addr.arpa.", false, 0, nil},              // partial name
		{"300.0.213.10.in-addr.arpa.", false, 0, nil},
	}
	for _, c := range cases {
		res := tb.Lookup(q(c.name, mdns.TypePTR))
		if res.Ours != c.ours || res.Rcode != c.rcode || !slices.Equal(aAddrs(res.Answer), c.want) {
			t.Errorf("%s: ours=%v rcode=%d answer=%v, want %v %d %v", c.name, res.Ours, res.Rcode, aAddrs(res.Answer), c.ours, c.rcode, c.want)
		}
	}
	v6 := NewTable("flatmesh", []netip.Prefix{netip.MustParsePrefix("fd00::/64")}, []Record{{"v6", netip.MustParseAddr("fd00::5")}})
	if res := v6.Lookup(q(rev("fd00::5"), mdns.TypePTR)); !slices.Equal(aAddrs(res.Answer), []string{"v6.flatmesh."}) {
		t.Errorf("ip6.arpa PTR: %v", aAddrs(res.Answer))
	}
}

func TestReverseAddrRoundTrip(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "10.213.1.255", "fd00::1", "2001:db8::abcd:1"} {
		r, err := mdns.ReverseAddr(s)
		if err != nil {
			t.Fatal(err)
		}
		a, ok := reverseAddr(r)
		if !ok || a != netip.MustParseAddr(s) {
			t.Errorf("%s -> %s -> %v %v", s, r, a, ok)
		}
	}
	for _, bad := range []string{"in-addr.arpa.", "1.2.3.in-addr.arpa.", "01.2.3.4.in-addr.arpa.", "a.2.3.4.in-addr.arpa.", "x.ip6.arpa."} {
		if _, ok := reverseAddr(bad); ok {
			t.Errorf("%s parsed", bad)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"web", "Web-1", "my_app", "api.shop", "a"} {
		if err := ValidName(ok, "flatmesh"); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	long := make([]byte, 64)
	for i := range long {
		long[i] = 'a'
	}
	for _, bad := range []string{"", "a b", "-a", "a-", "a..b", ".a", "foreign:10.0.0.1", string(long), "ü"} {
		if err := ValidName(bad, "flatmesh"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(10, 5, func() time.Time { return now })
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	n := 0
	for i := 0; i < 100; i++ {
		if l.allow(a) {
			n++
		}
	}
	if n != 5 {
		t.Errorf("burst: %d allowed, want 5", n)
	}
	if !l.allow(b) {
		t.Errorf("another source was limited too")
	}
	now = now.Add(500 * time.Millisecond)
	n = 0
	for i := 0; i < 100; i++ {
		if l.allow(a) {
			n++
		}
	}
	if n != 5 {
		t.Errorf("after 0.5 s at 10/s: %d allowed, want 5", n)
	}
	if newLimiter(-1, 0, nil).allow(a) != true {
		t.Errorf("a disabled limiter refused")
	}
}
