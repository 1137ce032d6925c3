package lab

import (
	"net/netip"
	"testing"
)

func TestPlanRouted(t *testing.T) {
	o, err := Options{Name: "lt", Hosts: 4, Subnets: 2, WorkDir: "/w", KeyFile: "/w/k"}.withDefaults("/bin/fm")
	if err != nil {
		t.Fatal(err)
	}
	d := newDescription(o)
	if d.Router == nil || d.Router.Netns != "lt-pm" || d.Router.Addr != netip.MustParsePrefix("10.99.0.254/24") || d.Plain != nil {
		t.Fatalf("router %+v, plain %+v", d.Router, d.Plain)
	}
	want := []struct{ addr, gw string }{
		{"10.99.0.1/24", "10.99.0.254"}, {"10.99.1.2/24", "10.99.1.254"},
		{"10.99.0.3/24", "10.99.0.254"}, {"10.99.1.4/24", "10.99.1.254"},
	}
	for i, w := range want {
		h, err := d.planHost(i + 1)
		if err != nil {
			t.Fatal(err)
		}
		if h.Underlay.String() != w.addr || h.Gateway.String() != w.gw || h.Subnet() != i%2 {
			t.Errorf("host %d: %s via %s subnet %d, want %s via %s", i+1, h.Underlay, h.Gateway, h.Subnet(), w.addr, w.gw)
		}
	}
	if !nsRegexp("lt").MatchString(d.Router.Netns) {
		t.Error("the router's namespace is not purged with the lab")
	}
	for _, bad := range []Options{{Subnets: 3}, {Subnets: -1}, {Subnets: 2, Mode: ModeFlat}} {
		bad.Name, bad.WorkDir, bad.KeyFile = "lt", "/w", "/w/k"
		if _, err := bad.withDefaults("/bin/fm"); err == nil {
			t.Errorf("options %+v accepted", bad)
		}
	}
	if one := testDescription(t, ModeVXLAN, 2); one.Router != nil || one.Hosts[1].Subnet() != 0 {
		t.Error("a one-subnet lab has a router")
	}
}
