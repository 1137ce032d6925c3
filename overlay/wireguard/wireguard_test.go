package wireguard

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func key(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDesiredPeersAndRoutes(t *testing.T) {
	priv, kb, kc := key(t), key(t).PublicKey(), key(t).PublicKey()
	self := Node{Name: "a", Underlay: ip("198.18.0.1"), Blocks: []netip.Prefix{pfx("10.213.0.0/26")}}
	b := Node{Name: "b", Underlay: ip("198.18.0.2"), Port: 51820, PublicKey: kb,
		Blocks: []netip.Prefix{pfx("10.213.0.128/26"), pfx("10.213.0.64/26")}}
	c := Node{Name: "c", Underlay: ip("198.18.0.3"), Port: 51999, PublicKey: kc, Blocks: []netip.Prefix{pfx("10.213.1.0/24")}}
	st, err := Desired(self, []Node{c, b}, Options{MTU: 1440, PrivateKey: priv, Keepalive: 25 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if st.Device.Name != "flatmesh.wg" || st.Device.ListenPort != 51820 || st.Device.PrivateKey != priv || st.MTU != 1440 {
		t.Errorf("device %+v mtu %d", st.Device, st.MTU)
	}
	wantPeers := []Peer{
		{Name: "b", PublicKey: kb, Endpoint: netip.MustParseAddrPort("198.18.0.2:51820"),
			AllowedIPs: []netip.Prefix{pfx("10.213.0.64/26"), pfx("10.213.0.128/26")}, Keepalive: 25 * time.Second},
		{Name: "c", PublicKey: kc, Endpoint: netip.MustParseAddrPort("198.18.0.3:51999"),
			AllowedIPs: []netip.Prefix{pfx("10.213.1.0/24")}, Keepalive: 25 * time.Second},
	}
	sortPeers(wantPeers)
	if !reflect.DeepEqual(st.Device.Peers, wantPeers) {
		t.Errorf("peers\n%+v\nwant\n%+v", st.Device.Peers, wantPeers)
	}
	src := ip("10.213.0.1")
	want := kernel.State{
		Addrs: []kernel.Addr{{Dev: "flatmesh0", Prefix: pfx("10.213.0.1/26")}},
		Routes: []kernel.Route{
			{Dst: pfx("10.213.0.64/26"), Dev: "flatmesh.wg", Src: src},
			{Dst: pfx("10.213.0.128/26"), Dev: "flatmesh.wg", Src: src},
			{Dst: pfx("10.213.1.0/24"), Dev: "flatmesh.wg", Src: src},
		},
	}
	if !reflect.DeepEqual(st.Objects.Normalize(), want.Normalize()) {
		t.Errorf("objects\n%+v\nwant\n%+v", st.Objects, want)
	}
	if err := st.Scope().Check(st.Objects); err != nil {
		t.Error(err)
	}
	// Peer order does not matter.
	st2, err := Desired(self, []Node{b, c}, Options{MTU: 1440, PrivateKey: priv, Keepalive: 25 * time.Second})
	if err != nil || !reflect.DeepEqual(st, st2) {
		t.Errorf("order changed the state: %v", err)
	}
}

func TestDesiredSkips(t *testing.T) {
	priv := key(t)
	kb := key(t).PublicKey()
	self := Node{Name: "a", Underlay: ip("198.18.0.1"), Blocks: []netip.Prefix{pfx("10.213.0.0/26")}}
	peers := []Node{
		{Name: "b", Underlay: ip("198.18.0.2"), Port: 51820, PublicKey: kb, Blocks: []netip.Prefix{pfx("10.213.0.64/26")}},
		{Name: "c", Underlay: ip("198.18.0.3"), Port: 51820, PublicKey: kb, Blocks: []netip.Prefix{pfx("10.213.1.0/26")}},                 // key of b
		{Name: "d", Underlay: ip("198.18.0.2"), Port: 51820, PublicKey: key(t).PublicKey(), Blocks: []netip.Prefix{pfx("10.213.2.0/26")}}, // underlay of b
		{Name: "e", Underlay: ip("198.18.0.5"), Port: 51820, Blocks: []netip.Prefix{pfx("10.213.3.0/26")}},                                // no key
		{Name: "f", Underlay: ip("198.18.0.6"), Port: 51820, PublicKey: key(t).PublicKey(), Blocks: []netip.Prefix{pfx("10.213.0.0/25")}}, // overlaps ours
		{Name: "g", Underlay: ip("198.18.0.7"), PublicKey: key(t).PublicKey(), Blocks: []netip.Prefix{pfx("10.213.4.0/26")}},              // no port
		{Name: "h", Underlay: ip("2001:db8::8"), Port: 51820, PublicKey: key(t).PublicKey(), Blocks: []netip.Prefix{pfx("10.213.5.0/26")}},
		{Name: "i", Underlay: ip("198.18.0.9"), Port: 51820, PublicKey: priv.PublicKey(), Blocks: []netip.Prefix{pfx("10.213.6.0/26")}}, // our key
		{Name: "j", Underlay: ip("198.18.0.10"), Port: 51820, PublicKey: key(t).PublicKey()},                                            // no blocks: silent
	}
	st, err := Desired(self, peers, Options{MTU: 1420, PrivateKey: priv})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Device.Peers) != 1 || st.Device.Peers[0].Name != "b" || len(st.Objects.Routes) != 1 {
		t.Errorf("peers %+v routes %+v", st.Device.Peers, st.Objects.Routes)
	}
	all := strings.Join(st.Skipped, "\n")
	for _, want := range []string{"peer c: public key", "peer d: underlay", "peer e: no wireguard public key",
		"peer f: block 10.213.0.0/25 overlaps", "peer g: wireguard port 0", "peer h: underlay", "peer i: public key"} {
		if !strings.Contains(all, want) {
			t.Errorf("skipped lacks %q:\n%s", want, all)
		}
	}
	if len(st.Skipped) != 7 {
		t.Errorf("%d skipped, want 7:\n%s", len(st.Skipped), all)
	}
}

func TestDesiredBadInput(t *testing.T) {
	self := Node{Name: "a", Underlay: ip("198.18.0.1")}
	priv := key(t)
	for name, o := range map[string]Options{
		"no mtu":    {PrivateKey: priv},
		"no key":    {MTU: 1420},
		"bad port":  {MTU: 1420, PrivateKey: priv, Port: 70000},
		"keepalive": {MTU: 1420, PrivateKey: priv, Keepalive: -time.Second},
		"device":    {MTU: 1420, PrivateKey: priv, Device: "this-name-is-too-long"},
	} {
		if _, err := Desired(self, nil, o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Desired(Node{Name: "a"}, nil, Options{MTU: 1420, PrivateKey: priv}); err == nil {
		t.Error("self without underlay: no error")
	}
}

func TestDiff(t *testing.T) {
	priv, priv2 := key(t), key(t)
	kb, kc, kd := key(t).PublicKey(), key(t).PublicKey(), key(t).PublicKey()
	pb := Peer{PublicKey: kb, Endpoint: netip.MustParseAddrPort("198.18.0.2:51820"), AllowedIPs: []netip.Prefix{pfx("10.213.0.64/26")}}
	pc := Peer{PublicKey: kc, Endpoint: netip.MustParseAddrPort("198.18.0.3:51820"), AllowedIPs: []netip.Prefix{pfx("10.213.1.0/26")}}
	pd := Peer{PublicKey: kd, Endpoint: netip.MustParseAddrPort("198.18.0.4:51820"), AllowedIPs: []netip.Prefix{pfx("10.213.2.0/26")}}
	want := Device{Name: "flatmesh.wg", PrivateKey: priv, ListenPort: 51820, Peers: []Peer{pb, pc}}
	if p := Diff(want, want); !p.Empty() || p.String() != "nothing to do" {
		t.Errorf("Diff(want, want) = %s", p)
	}
	pcMoved := pc
	pcMoved.Endpoint = netip.MustParseAddrPort("198.18.0.33:51820")
	pbReordered := pb
	pbReordered.AllowedIPs = []netip.Prefix{pfx("10.213.0.64/26"), pfx("10.213.0.64/26")}
	have := Device{Name: "flatmesh.wg", PrivateKey: priv2, ListenPort: 51821, Peers: []Peer{pbReordered, pcMoved, pd}}
	p := Diff(want, have)
	if p.PrivateKey == nil || *p.PrivateKey != priv || p.ListenPort == nil || *p.ListenPort != 51820 {
		t.Errorf("key/port not planned: %s", p)
	}
	if len(p.Add) != 0 || len(p.Update) != 1 || p.Update[0].PublicKey != kc || len(p.Remove) != 1 || p.Remove[0] != kd {
		t.Errorf("plan %+v", p)
	}
	if s := p.String(); strings.Contains(s, priv.String()) || !strings.Contains(s, "update 1 peer") {
		t.Errorf("plan string %q", s)
	}
	cfg := p.Config()
	if cfg.ReplacePeers || len(cfg.Peers) != 2 || !cfg.Peers[0].Remove || cfg.Peers[1].PublicKey != kc ||
		!cfg.Peers[1].ReplaceAllowedIPs || cfg.Peers[1].Endpoint.String() != "198.18.0.3:51820" ||
		len(cfg.Peers[1].AllowedIPs) != 1 || cfg.Peers[1].AllowedIPs[0].String() != "10.213.1.0/26" {
		t.Errorf("config %+v", cfg)
	}
	if p := Diff(want, Device{Name: "flatmesh.wg", PrivateKey: priv, ListenPort: 51820}); len(p.Add) != 2 || p.PrivateKey != nil {
		t.Errorf("empty device plan %s", p)
	}
}

func TestFromWgtypesRoundTrip(t *testing.T) {
	priv := key(t)
	pb := Peer{PublicKey: key(t).PublicKey(), Endpoint: netip.MustParseAddrPort("198.18.0.2:51820"),
		AllowedIPs: []netip.Prefix{pfx("10.213.1.0/26"), pfx("10.213.0.64/26")}, Keepalive: 5 * time.Second}
	want := Device{Name: "flatmesh.wg", PrivateKey: priv, ListenPort: 51820, Peers: []Peer{pb}}
	cfg := Diff(want, Device{Name: "flatmesh.wg"}).Config()
	// What a device reports after that configuration.
	pc := cfg.Peers[0]
	d := &wgtypes.Device{Name: "flatmesh.wg", PrivateKey: *cfg.PrivateKey, ListenPort: *cfg.ListenPort,
		Peers: []wgtypes.Peer{{PublicKey: pc.PublicKey, Endpoint: pc.Endpoint, AllowedIPs: pc.AllowedIPs,
			PersistentKeepaliveInterval: *pc.PersistentKeepaliveInterval, ReceiveBytes: 7, TransmitBytes: 9}}}
	if p := Diff(want, FromWgtypes(d)); !p.Empty() {
		t.Errorf("configured device still differs: %s", p)
	}
	if s := Stats(d)[pb.PublicKey]; s.RxBytes != 7 || s.TxBytes != 9 || !s.LastHandshake.IsZero() {
		t.Errorf("stats %+v", s)
	}
}

// fakeLinks records what OpenDevice asked for.
type fakeLinks struct {
	existing  string
	kernelErr error
	calls     []string
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

func (f *fakeLinks) Existing(string) (string, error) {
	f.calls = append(f.calls, "existing")
	return f.existing, nil
}
func (f *fakeLinks) CreateKernel(string) error {
	f.calls = append(f.calls, "kernel")
	return f.kernelErr
}
func (f *fakeLinks) Delete(string) error { f.calls = append(f.calls, "delete"); return nil }
func (f *fakeLinks) StartUserspace(string, int) (io.Closer, error) {
	f.calls = append(f.calls, "userspace")
	return nopCloser{}, nil
}

func TestOpenDeviceSelection(t *testing.T) {
	for _, tc := range []struct {
		name      string
		existing  string
		kernelErr error
		backend   string
		created   bool
		calls     string
		fails     bool
	}{
		{"kernel module present", "", nil, BackendKernel, true, "existing kernel", false},
		{"no module", "", ErrNoKernel, BackendUserspace, true, "existing kernel userspace", false},
		{"kernel device adopted", "wireguard", nil, BackendKernel, false, "existing", false},
		{"tun re-attached", "tun", nil, BackendUserspace, false, "existing userspace", false},
		{"foreign link replaced", "bridge", ErrNoKernel, BackendUserspace, true, "existing delete kernel userspace", false},
		{"other kernel error", "", errors.New("permission denied"), "", false, "existing kernel", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeLinks{existing: tc.existing, kernelErr: tc.kernelErr}
			h, err := OpenDevice(f, "flatmesh.wg", 1420)
			if (err != nil) != tc.fails {
				t.Fatalf("err %v", err)
			}
			if got := strings.Join(f.calls, " "); got != tc.calls {
				t.Errorf("calls %q, want %q", got, tc.calls)
			}
			if h.Backend != tc.backend || h.Created != tc.created {
				t.Errorf("handle %+v", h)
			}
			if (h.Closer != nil) != (tc.backend == BackendUserspace) {
				t.Errorf("closer %v for %s", h.Closer, h.Backend)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), KeyFile)
	k1, created, err := LoadOrCreateKey(path)
	if err != nil || !created || k1 == (wgtypes.Key{}) {
		t.Fatalf("first load: %v created=%t", err, created)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v %v", st.Mode(), err)
	}
	k2, created, err := LoadOrCreateKey(path)
	if err != nil || created || k2 != k1 {
		t.Fatalf("second load: %v created=%t same=%t", err, created, k1 == k2)
	}
	k3, err := NewKey(path)
	if err != nil || k3 == k1 {
		t.Fatalf("rotation: %v", err)
	}
	if k4, _, _ := LoadOrCreateKey(path); k4 != k3 {
		t.Error("rotated key not kept")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key accepted: %v", err)
	}
	if err := os.WriteFile(path, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(path); err == nil {
		t.Error("garbage key accepted")
	}
}

func TestPeerCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.json")
	if ps, err := LoadPeers(path); err != nil || ps != nil {
		t.Fatalf("no file: %v %v", ps, err)
	}
	want := []Peer{{Name: "b", PublicKey: key(t).PublicKey(), Endpoint: netip.MustParseAddrPort("198.18.0.2:51820"),
		AllowedIPs: []netip.Prefix{pfx("10.213.0.64/26")}, Keepalive: 25 * time.Second}}
	if err := SavePeers(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadPeers(path)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip %+v %v", got, err)
	}
	for _, bad := range []string{`[{"public_key":"nope","endpoint":"198.18.0.2:1"}]`, `[{"public_key":"` + want[0].PublicKey.String() + `","endpoint":"198.18.0.2:0"}]`, `{`} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadPeers(path); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
