package agent

import (
	"strings"
	"testing"
)

// TestWireGuardDirectNeedsCleartextOptIn: --direct-routing in wireguard
// mode is refused without --wg-direct-cleartext (cleartext on the LAN is
// never a default there), accepted with it, and vxlan needs no opt-in.
func TestWireGuardDirectNeedsCleartextOptIn(t *testing.T) {
	base := []string{"--insecure", "--advertise", "192.0.2.1"}
	_, err := load(t, loadCase{args: append(base, "--mode", "wireguard", "--direct-routing")})
	if err == nil || !strings.Contains(err.Error(), "wg_direct_cleartext") {
		t.Fatalf("wireguard + direct routing without the opt-in: %v", err)
	}
	c, err := load(t, loadCase{args: append(base, "--mode", "wireguard", "--direct-routing", "--wg-direct-cleartext")})
	if err != nil || !c.DirectRouting || !c.WGDirectCleartext {
		t.Fatalf("with the opt-in: %+v %v", c, err)
	}
	c, err = load(t, loadCase{hcl: "mode = \"wireguard\"\ndirect_routing = true\nwg_direct_cleartext = true\n", args: base})
	if err != nil || !c.DirectRouting || !c.WGDirectCleartext {
		t.Fatalf("from HCL: %+v %v", c, err)
	}
	if c, err = load(t, loadCase{args: append(base, "--mode", "vxlan", "--direct-routing")}); err != nil || !c.DirectRouting {
		t.Fatalf("vxlan: %+v %v", c, err)
	}
	if c, err = load(t, loadCase{args: append(base, "--pprof")}); err != nil || !c.Pprof {
		t.Fatalf("--pprof: %+v %v", c, err)
	}
}
