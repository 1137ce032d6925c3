package firewall

import (
	"slices"
	"strings"
	"testing"
)

// TestOverlayFastAcceptsOpenNothingNew: the accepts placed before the
// Docker returns name our own device as output, never a Docker bridge, and
// each is a later accept of the chain narrowed by that output device, so
// the chain accepts exactly what it accepted without them.
func TestOverlayFastAcceptsOpenNothingNew(t *testing.T) {
	for _, o := range []Options{
		{Bridge: "flatmesh0", Overlay: "flatmesh.vx", ClusterCIDRs: pfx("10.213.0.0/16"), NoNAT: pfx("192.168.56.11/32")},
		{Bridge: "flatmesh0", Overlay: "flatmesh.wg", ClusterCIDRs: pfx("10.213.0.0/16", "10.77.0.0/16"), Direct: "eth0"},
		{Bridge: "flatmesh0", Overlay: "flatmesh.vx", ClusterCIDRs: pfx("fd00::/64"), IPv6: true},
	} {
		for _, f := range []Family{IPv4, IPv6} {
			if (f == IPv6 && !o.IPv6) || len(normalize(o.ClusterCIDRs, f)) == 0 {
				continue
			}
			rules := Rules(o).Chains(f)[0].Rules
			fast := overlayFastAccepts(o, normalize(o.ClusterCIDRs, f))
			if len(fast) == 0 || !slices.Equal(rules[:len(fast)], fast) {
				t.Fatalf("%s %+v: chain %q does not start with the fast accepts %q", f, o, rules, fast)
			}
			rest := rules[len(fast):]
			if !slices.ContainsFunc(rest, func(r string) bool { return strings.Contains(r, "-o docker0 -j RETURN") }) {
				t.Errorf("%s: the Docker returns are gone: %q", f, rules)
			}
			for _, r := range fast {
				out := fieldAfter(r, "-o")
				if out != o.Bridge && out != o.Overlay {
					t.Errorf("%s: fast accept %q leaves through %q, not our device", f, r, out)
				}
				wider := strings.Replace(r, " -o "+out, "", 1)
				if !slices.Contains(rest, wider) {
					t.Errorf("%s: fast accept %q is not a later accept (%q) narrowed: %q", f, r, wider, rest)
				}
			}
		}
	}
	for _, o := range []Options{
		{Bridge: "br0", Flat: true, ClusterCIDRs: pfx("192.168.1.64/26")},
		{Overlay: "wg0", ClusterCIDRs: pfx("10.1.0.0/16")},
		{Bridge: "b", ClusterCIDRs: pfx("10.0.0.0/8")},
		{Bridge: "x", Overlay: "x", ClusterCIDRs: pfx("10.0.0.0/8")},
	} {
		if got := overlayFastAccepts(o, normalize(o.ClusterCIDRs, IPv4)); got != nil {
			t.Errorf("%+v: fast accepts %q, want none", o, got)
		}
	}
}

// fieldAfter returns the word after flag in an iptables rule spec.
func fieldAfter(spec, flag string) string {
	f := strings.Fields(spec)
	if i := slices.Index(f, flag); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	return ""
}
