package kernel

import (
	"net/netip"
	"strings"
	"testing"
)

func TestValidateIfName(t *testing.T) {
	for _, ok := range []string{"eth0", "flatmesh.vx", "a", "fm0123456789abc", "net-1_x"} {
		if err := ValidateIfName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for name, msg := range map[string]string{
		"":                 "empty",
		"fm0123456789abcd": "16 bytes long; Linux allows at most 15",
		"a/b":              "contains '/'",
		"a:b":              "contains ':'",
		"a b":              "contains ' '",
		"..":               "not allowed",
		"ethé":             "contains 'é'",
	} {
		err := ValidateIfName(name)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: error %v, want one containing %q", name, err, msg)
		}
	}
}

func TestVXLANIncompatible(t *testing.T) {
	base := VXLANSpec{Name: "vx", VNI: 4213, Port: 4789, Local: netip.MustParseAddr("198.18.0.1")}
	if why := vxlanIncompatible(base, base); why != "" {
		t.Fatalf("same spec incompatible: %s", why)
	}
	other := base
	other.MTU = 1400 // fixed in place, not a reason to recreate
	other.Local = netip.AddrFrom16(base.Local.As16())
	if why := vxlanIncompatible(base, other); why != "" {
		t.Fatalf("mtu or mapped address made it incompatible: %s", why)
	}
	other = base
	other.VNI, other.Port, other.Learning = 1, 8472, true
	why := vxlanIncompatible(base, other)
	for _, w := range []string{"vni 1, want 4213", "port 8472, want 4789", "learning true, want false"} {
		if !strings.Contains(why, w) {
			t.Errorf("reason %q lacks %q", why, w)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	if err := (VXLANSpec{Name: "vx", VNI: 1 << 24, Port: 4789}).Validate(); err == nil || !strings.Contains(err.Error(), "vni") {
		t.Errorf("vni range: %v", err)
	}
	if err := (VXLANSpec{Name: "vx", VNI: 1, Port: 0}).Validate(); err == nil || !strings.Contains(err.Error(), "port") {
		t.Errorf("port range: %v", err)
	}
	if err := (BridgeSpec{Name: "br", MAC: []byte{1, 2, 3}}).Validate(); err == nil || !strings.Contains(err.Error(), "6-byte") {
		t.Errorf("bridge mac: %v", err)
	}
}

func TestParseNetnsSpec(t *testing.T) {
	cases := []struct {
		spec string
		kind netnsSpecKind
		path string
	}{
		{"/run/netns/x", specPath, "/run/netns/x"},
		{"/proc/12/ns/net", specPath, "/proc/12/ns/net"},
		{"123", specPID, "/proc/123/ns/net"},
		{"blue", specName, "/run/netns/blue"},
	}
	for _, c := range cases {
		k, p, err := parseNetnsSpec(c.spec)
		if err != nil || k != c.kind || p != c.path {
			t.Errorf("%q: got %v %q %v", c.spec, k, p, err)
		}
	}
	for _, bad := range []string{"", "0", "-3", ".."} {
		if _, _, err := parseNetnsSpec(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestMAC(t *testing.T) {
	m, err := ParseMAC("0e:fd:c6:12:00:01")
	if err != nil || m.String() != "0e:fd:c6:12:00:01" || m.IsZero() {
		t.Fatalf("got %v %v", m, err)
	}
	if _, err := MACFrom([]byte{1, 2}); err == nil {
		t.Fatal("short mac accepted")
	}
	if _, err := ParseMAC("zz"); err == nil {
		t.Fatal("garbage accepted")
	}
}
