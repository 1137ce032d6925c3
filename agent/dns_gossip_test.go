package agent

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
	"time"

	fmdns "github.com/flatmesh/flatmesh/agent/dns"
)

var testSpace = []netip.Prefix{netip.MustParsePrefix("10.213.0.0/16")}

func rec(name, addr string) fmdns.Record {
	return fmdns.Record{Name: name, Addr: netip.MustParseAddr(addr)}
}

func TestHostNamesWire(t *testing.T) {
	in := hostNames{Host: "h2", Version: 42, Boot: 7, Entries: []fmdns.Record{rec("web", "10.213.0.66"), rec("v6", "fd00::1")}}
	b := encodeHostNames(in)
	out, err := decodeHostNames(b)
	if err != nil || out.Host != in.Host || out.Version != in.Version || out.Boot != in.Boot || !slices.Equal(out.Entries, in.Entries) {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	for i := 0; i < len(b); i++ {
		if _, err := decodeHostNames(b[:i]); err == nil {
			t.Errorf("a record cut at %d bytes decoded", i)
		}
	}
	if _, err := decodeHostNames(append(b, 0)); err == nil {
		t.Errorf("trailing bytes accepted")
	}
	ipamState := []byte{0xFB, 1, 1, 9, 9}
	joined := joinPushPull(ipamState, b)
	gotIPAM, gotRec, err := splitPushPull(joined)
	if err != nil || !bytes.Equal(gotIPAM, ipamState) || !bytes.Equal(gotRec, b) {
		t.Errorf("push-pull split: %v %v %v", gotIPAM, gotRec, err)
	}
	if plain, r, err := splitPushPull(ipamState); err != nil || !bytes.Equal(plain, ipamState) || r != nil {
		t.Errorf("a plain IPAM state did not pass through: %v %v %v", plain, r, err)
	}
	if got := joinPushPull(ipamState, nil); !bytes.Equal(got, ipamState) {
		t.Errorf("DNS off changed the push-pull state")
	}
	if _, _, err := splitPushPull([]byte{namesMagic, 1, 2, 200}); err == nil {
		t.Errorf("a short envelope split")
	}
}

func FuzzDecodeHostNames(f *testing.F) {
	f.Add(encodeHostNames(hostNames{Host: "h1", Version: 1, Entries: []fmdns.Record{rec("a", "10.213.0.2")}}))
	f.Add(joinPushPull([]byte{0xFB}, encodeHostNames(hostNames{Host: "h1"})))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeHostNames(b); err == nil {
			if again, err := decodeHostNames(encodeHostNames(r)); err != nil || again.Host != r.Host || len(again.Entries) != len(r.Entries) {
				t.Fatalf("re-encoding changed the record: %v", err)
			}
		}
		_, _, _ = splitPushPull(b)
	})
}

func TestNameBook(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	b := newNameBook("h1", "flatmesh", testSpace, clock)
	owners := map[string][]netip.Prefix{
		"h1": {netip.MustParsePrefix("10.213.0.0/26")},
		"h2": {netip.MustParsePrefix("10.213.0.64/26")},
		"h3": {netip.MustParsePrefix("10.213.0.128/26")},
	}
	b.setView([]string{"h1", "h2", "h3"}, owners)
	if _, changed := b.setOwn([]fmdns.Record{rec("c11", "10.213.0.2")}); !changed {
		t.Fatal("own names did not change")
	}
	if _, changed := b.setOwn([]fmdns.Record{rec("c11", "10.213.0.2")}); changed {
		t.Fatal("the same names changed the version")
	}
	v := uint64(now.UnixNano())
	h2 := encodeHostNames(hostNames{Host: "h2", Version: v, Entries: []fmdns.Record{rec("web", "10.213.0.66"), rec("c11", "10.213.0.67")}})
	mustAccept := func(sender string, p []byte, want bool) {
		t.Helper()
		res, err := b.accept(sender, p)
		if (err == nil && res.changed) != want {
			t.Errorf("accept from %q: changed=%v err=%v, want accepted=%v", sender, res.changed, err, want)
		}
	}
	mustAccept("h3", h2, false) // only h2 speaks for h2
	mustAccept("h2", h2, true)
	mustAccept("h2", h2, false) // same version
	tb := fmdns.NewTable("flatmesh", testSpace, b.records())
	if got := tb.Addrs("c11"); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.213.0.2"), netip.MustParseAddr("10.213.0.67")}) {
		t.Errorf("c11 on two hosts: %v", got)
	}
	// h2 claims an address in h3's block: not answered.
	mustAccept("", encodeHostNames(hostNames{Host: "h2", Version: v + 1, Entries: []fmdns.Record{rec("web", "10.213.0.130")}}), true)
	if got := fmdns.NewTable("flatmesh", testSpace, b.records()).Addrs("web"); len(got) != 0 {
		t.Errorf("a name in another host's block answered: %v", got)
	}
	mustAccept("h2", encodeHostNames(hostNames{Host: "h2", Version: v}), false) // older
	mustAccept("h2", encodeHostNames(hostNames{Host: "h2", Version: uint64(now.Add(48 * time.Hour).UnixNano())}), false)
	mustAccept("h2", encodeHostNames(hostNames{Host: "h2", Version: v + 2, Entries: []fmdns.Record{rec("x", "192.0.2.1")}}), false)
	mustAccept("h2", encodeHostNames(hostNames{Host: "h2", Version: v + 2, Entries: []fmdns.Record{rec("bad name", "10.213.0.66")}}), false)
	mustAccept("h9", encodeHostNames(hostNames{Host: "h9", Version: v}), false) // not a member
	mustAccept("h1", encodeHostNames(hostNames{Host: "h1", Version: v + 99}), false)

	// A removed container is gone with the next version.
	mustAccept("h2", encodeHostNames(hostNames{Host: "h2", Version: v + 3, Entries: []fmdns.Record{rec("web", "10.213.0.66")}}), true)
	if got := fmdns.NewTable("flatmesh", testSpace, b.records()).Addrs("c11"); len(got) != 1 {
		t.Errorf("c11 after h2 dropped it: %v", got)
	}
	// h2 dies: its names stay while it owns its block, go after rmpeer.
	b.setView([]string{"h1", "h3"}, owners)
	if got := fmdns.NewTable("flatmesh", testSpace, b.records()).Addrs("web"); len(got) != 1 {
		t.Errorf("a dead host's name went before rmpeer: %v", got)
	}
	delete(owners, "h2")
	owners["h3"] = append(owners["h3"], netip.MustParsePrefix("10.213.0.64/26"))
	b.setView([]string{"h1", "h3"}, owners)
	if got := fmdns.NewTable("flatmesh", testSpace, b.records()).Addrs("web"); len(got) != 0 {
		t.Errorf("a removed host's name stayed: %v", got)
	}
	if hosts, _ := b.stats(); hosts != 1 {
		t.Errorf("the removed host's record was kept: %d hosts", hosts)
	}
}

// TestNameBookRestart: a host seen for the first time, or with a new boot
// stamp (it restarted and lost what it knew), is to be sent our record;
// a newer record of the same boot is not a restart.
func TestNameBookRestart(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	b := newNameBook("h1", "flatmesh", testSpace, func() time.Time { return now })
	b.setView([]string{"h1", "h2"}, nil)
	v := uint64(now.UnixNano())
	for i, c := range []struct {
		version, boot uint64
		restart       bool
	}{{v, 1, true}, {v + 1, 1, false}, {v + 1, 1, false}, {v + 2, 2, true}, {v + 3, 2, false}} {
		res, err := b.accept("h2", encodeHostNames(hostNames{Host: "h2", Version: c.version, Boot: c.boot}))
		if err != nil || (res.restart == "h2") != c.restart {
			t.Errorf("step %d: restart=%q err=%v, want restart=%v", i, res.restart, err, c.restart)
		}
	}
}
