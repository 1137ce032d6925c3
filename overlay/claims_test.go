package overlay

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClaims(t *testing.T) {
	c := NewClaims("a", netip.MustParseAddr("198.18.0.1"), []netip.Prefix{netip.MustParsePrefix("10.213.0.0/26")})
	if got := c.ClaimBlock(netip.MustParsePrefix("10.213.0.0/25"), "peer b"); !strings.Contains(got, "10.213.0.0/26 (our own block)") {
		t.Errorf("overlap with our block: %q", got)
	}
	if got := c.ClaimBlock(netip.MustParsePrefix("10.213.1.0/26"), "peer b"); got != "" {
		t.Errorf("free block refused: %q", got)
	}
	if got := c.ClaimBlock(netip.MustParsePrefix("10.213.1.5/32"), "peer c"); !strings.Contains(got, "peer b") {
		t.Errorf("overlap with peer b: %q", got)
	}
	c.ClaimUnderlay(netip.MustParseAddr("198.18.0.2"), "b")
	for addr, want := range map[string]string{
		"198.18.0.2":     "already used by b",
		"198.18.0.1":     "already used by a",
		"0.0.0.0":        "no usable underlay",
		"224.0.0.1":      "no usable underlay",
		"2001:db8::1":    "another family",
		"::ffff:1.2.3.4": "",
		"198.18.0.3":     "",
	} {
		if got := c.UnderlayProblem(netip.MustParseAddr(addr)); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
	if got := c.UnderlayProblem(netip.Addr{}); !strings.Contains(got, "no usable") {
		t.Errorf("zero address: %q", got)
	}
}
