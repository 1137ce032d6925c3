package cluster

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func fullMeta() Meta {
	var key [32]byte
	for i := range key {
		key[i] = byte(i + 1)
	}
	return Meta{
		Mode:          "wireguard",
		Cluster:       strings.Repeat("c", MaxClusterLen),
		Underlay:      netip.MustParseAddr("2001:db8::1"),
		Fingerprint:   0xdeadbeefcafef00d,
		VTEPMAC:       net.HardwareAddr(bytes.Repeat([]byte{0xab}, MaxMACLen)),
		WGPublicKey:   key,
		WGPort:        51820,
		IPAMSeed:      42,
		IPAMDigest:    0xfeedface,
		IPAMUsed:      true,
		Leaving:       true,
		DirectRouting: true,
		SignKey:       PublicKey(bytes.Repeat([]byte{0x5a}, 32)),
	}
}

func TestMetaRoundTrip(t *testing.T) {
	cases := map[string]Meta{
		"zero":   {},
		"vxlan":  {Mode: "vxlan", Cluster: "red", Underlay: netip.MustParseAddr("192.0.2.10"), Fingerprint: 7, VTEPMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
		"flat":   {Mode: "flat", Cluster: "lab", Underlay: netip.MustParseAddr("10.0.2.15"), IPAMSeed: 1<<64 - 1},
		"4in6":   {Underlay: netip.MustParseAddr("::ffff:10.0.0.1")},
		"full":   fullMeta(),
		"wgonly": {WGPort: 1},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			b, err := m.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if b[0] != MetaVersion {
				t.Errorf("first byte = %d, want version %d", b[0], MetaVersion)
			}
			if len(b) > memberlist.MetaMaxSize {
				t.Errorf("encoded %d bytes, limit %d", len(b), memberlist.MetaMaxSize)
			}
			got, err := DecodeMeta(b)
			if err != nil {
				t.Fatalf("DecodeMeta: %v", err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, m)
			}
		})
	}
}

func TestMetaFullSizeIsLargest(t *testing.T) {
	m := fullMeta()
	m.Mode = strings.Repeat("m", MaxModeLen)
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != maxMetaLen {
		t.Errorf("largest encoding is %d bytes, maxMetaLen says %d", len(b), maxMetaLen)
	}
}

func TestMetaEncodeLimits(t *testing.T) {
	cases := map[string]Meta{
		"mode":    {Mode: strings.Repeat("m", MaxModeLen+1)},
		"cluster": {Cluster: strings.Repeat("c", MaxClusterLen+1)},
		"zone":    {Underlay: netip.MustParseAddr("fe80::1%eth0")},
		"mac":     {VTEPMAC: make(net.HardwareAddr, MaxMACLen+1)},
	}
	for name, m := range cases {
		if _, err := m.Encode(); err == nil {
			t.Errorf("%s: Encode accepted an oversized field", name)
		}
	}
}

func TestDecodeMetaErrors(t *testing.T) {
	good, err := Meta{Mode: "vxlan", Cluster: "red", Underlay: netip.MustParseAddr("192.0.2.1")}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeMeta(nil); err == nil {
		t.Error("empty input decoded")
	}
	future := append([]byte{MetaVersion + 1}, good[1:]...)
	_, err = DecodeMeta(future)
	if !errors.Is(err, ErrMetaVersion) || !strings.Contains(err.Error(), "2") {
		t.Errorf("future version: err = %v, want ErrMetaVersion naming version 2", err)
	}
	for i := 1; i < len(good); i++ {
		if i == len(good)-8 {
			continue // an encoding from before IPAMDigest existed: valid
		}
		if _, err := DecodeMeta(good[:i]); err == nil {
			t.Errorf("truncated to %d bytes: decoded without error", i)
		}
	}
	// A bad address length (5) inside an otherwise well-formed encoding.
	bad := []byte{1, 0, 0, 0, 5, 1, 2, 3, 4, 5}
	bad = append(bad, make([]byte, 8+1+2+8)...)
	if _, err := DecodeMeta(bad); err == nil || !strings.Contains(err.Error(), "underlay") {
		t.Errorf("5-byte address: err = %v, want an underlay error", err)
	}
}

// The signing key is appended after the digest (flag 16): an encoding that
// sets the flag but lacks the key is refused, and a version-1 decoder that
// predates the key ignores it (it is trailing bytes there).
func TestMetaSignKey(t *testing.T) {
	m := Meta{Mode: "vxlan", Cluster: "red", SignKey: PublicKey(bytes.Repeat([]byte{7}, 32))}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMeta(b)
	if err != nil || got.SignKey != m.SignKey {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := DecodeMeta(b[:len(b)-1]); err == nil {
		t.Error("a truncated signing key decoded")
	}
	old := append([]byte(nil), b...)
	old[1] &^= flagSignKey // what an older agent sees: flag unknown, key = trailing bytes
	if got, err := DecodeMeta(old); err != nil || got.SignKey != (PublicKey{}) {
		t.Errorf("without the flag: %+v, %v", got, err)
	}
}

func TestDecodeMetaIgnoresAppendedFields(t *testing.T) {
	m := Meta{Mode: "flat", Cluster: "x", IPAMSeed: 9}
	b, _ := m.Encode()
	b[1] |= 0x80 // a flag bit from the future
	got, err := DecodeMeta(append(b, 0xfe, 0xed))
	if err != nil {
		t.Fatalf("decoding with trailing fields: %v", err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("got %+v, want %+v", got, m)
	}
}

// FuzzDecodeMeta: arbitrary bytes never panic, and whatever decodes
// re-encodes to something that decodes to the same Meta.
func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{{}, fullMeta(), {Mode: "vxlan", Cluster: "red", Underlay: netip.MustParseAddr("10.0.2.15")}} {
		b, _ := m.Encode()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{2})
	f.Add([]byte{1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		again, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded %+v does not re-encode: %v", m, err)
		}
		m2, err := DecodeMeta(again)
		if err != nil {
			t.Fatalf("re-encoded meta does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("unstable round trip:\n%+v\n%+v", m, m2)
		}
	})
}
