package flat

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPreflight(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	cases := []struct {
		name string
		mod  func(*Snapshot, *Options)
		want string // substring of the error; "" = accepted
	}{
		{"ok", func(*Snapshot, *Options) {}, ""},
		{"default bridge name", func(_ *Snapshot, o *Options) { o.Bridge = "" }, ""},
		{"bond", func(s *Snapshot, _ *Options) { s.NIC.Kind = "bond" }, ""},
		{"missing nic", func(s *Snapshot, _ *Options) { s.NIC, s.Addrs, s.Routes = nil, nil, nil }, "interface eth0 not found"},
		{"no iface option", func(_ *Snapshot, o *Options) { o.Iface = "" }, "no interface given"},
		{"bridge name too long", func(_ *Snapshot, o *Options) { o.Bridge = "flatmesh-bridge0" }, "at most 15 characters"},
		{"bridge named like nic", func(_ *Snapshot, o *Options) { o.Bridge = "eth0" }, "is the NIC's own name"},
		{"wireless", func(s *Snapshot, _ *Options) { s.NIC.Wireless = true }, "eth0 is a wireless interface"},
		{"tun", func(s *Snapshot, _ *Options) { s.NIC.Kind = "tuntap" }, "eth0 is a tuntap interface, not an Ethernet NIC"},
		{"bridge as nic", func(s *Snapshot, _ *Options) { s.NIC.Kind = "bridge" }, "not an Ethernet NIC"},
		{"down", func(s *Snapshot, _ *Options) { s.NIC.Up = false }, "eth0 is down"},
		{"enslaved elsewhere", func(s *Snapshot, _ *Options) { s.NIC.Master, s.NIC.MasterIndex = "br-lan", 7 }, "already a port of br-lan"},
		{"foreign bridge", func(s *Snapshot, _ *Options) { s.Bridge = &Bridge{Link: Link{Name: "fmbr0", Index: 9, Kind: "bridge"}} }, "bridge fmbr0 already exists without eth0"},
		{"name taken by non-bridge", func(s *Snapshot, _ *Options) { s.Bridge = &Bridge{Link: Link{Name: "fmbr0", Index: 9, Kind: "veth"}} }, "is a veth, not a bridge"},
		{"dhcp address", func(s *Snapshot, _ *Options) { s.Addrs[0].Valid, s.Addrs[0].Preferred = 3599, 3599 },
			"address 192.168.1.10/24 on eth0 is dynamic (valid_lft 3599s, from DHCP or SLAAC)"},
		{"slaac address", func(s *Snapshot, _ *Options) { s.Addrs[2].Valid = 86400 }, "make the address static in your network configuration"},
		{"dynamic link-local ignored", func(s *Snapshot, _ *Options) { s.Addrs[3].Valid = 100 }, ""},
		{"label too long", func(s *Snapshot, o *Options) { s.Addrs[1].Label = "eth0:backup12"; o.Bridge = "flatmeshbr" }, "longer than 15 characters"},
		{"ipv4 multipath", func(s *Snapshot, _ *Options) { s.Routes[0].Multipath = true }, "IPv4 multipath route"},
		{"no range", func(_ *Snapshot, o *Options) { o.Range = netip.Prefix{} }, "no flat range given"},
		{"ipv6 range", func(_ *Snapshot, o *Options) { o.Range, o.Exclude = p("2001:db8::/120"), nil }, "is not IPv4"},
		{"host bits", func(_ *Snapshot, o *Options) { o.Range = p("192.168.1.65/26") }, "did you mean 192.168.1.64/26"},
		{"range outside subnet", func(_ *Snapshot, o *Options) { o.Range, o.Exclude = p("10.0.0.0/24"), nil }, "flat range 10.0.0.0/24 is outside eth0's subnet (192.168.1.0/24)"},
		{"range wider than subnet", func(_ *Snapshot, o *Options) { o.Range = p("192.168.0.0/23") }, "is outside eth0's subnet"},
		{"range over host address", func(_ *Snapshot, o *Options) { o.Range, o.Exclude = p("192.168.1.0/28"), nil }, "contains the host's own address 192.168.1.10"},
		{"host address excluded", func(_ *Snapshot, o *Options) {
			o.Range, o.Exclude = p("192.168.1.0/28"), []netip.Prefix{p("192.168.1.8/29"), p("192.168.1.1/32")}
		}, ""},
		{"range over gateway", func(_ *Snapshot, o *Options) { o.Range, o.Exclude = p("192.168.1.0/31"), nil }, "contains the default gateway 192.168.1.1"},
		{"exclude outside range", func(_ *Snapshot, o *Options) { o.Exclude = []netip.Prefix{p("192.168.1.0/30")} }, "lies outside the flat range"},
		{"no gateway no probe", func(s *Snapshot, _ *Options) { s.Routes = s.Routes[1:] }, "no IPv4 default gateway to verify"},
		{"no gateway, probe", func(s *Snapshot, o *Options) { s.Routes, o.ProbeAddr = s.Routes[1:], a("192.168.1.2") }, ""},
		{"probe off-link", func(s *Snapshot, o *Options) { s.Routes, o.ProbeAddr = s.Routes[1:], a("10.0.0.1") }, "is not on eth0's subnet"},
		{"probe in range", func(_ *Snapshot, o *Options) { o.ProbeAddr = a("192.168.1.70") }, "contains the probe address"},
		{"no ipv4 address", func(s *Snapshot, _ *Options) { s.Addrs = s.Addrs[2:] }, "eth0 has no IPv4 address"},
		{"adopted", func(s *Snapshot, _ *Options) {
			s.Bridge = &Bridge{Link: Link{Name: "fmbr0", Index: 9, Kind: "bridge", MAC: s.NIC.MAC}, Addrs: s.Addrs, Routes: onDev(s.Routes, "fmbr0")}
			s.NIC.Master, s.NIC.MasterIndex, s.Addrs, s.Routes = "fmbr0", 9, nil, nil
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, o := testHost(), testOptions()
			c.mod(&s, &o)
			err := Preflight(s, o)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("accepted, want error containing %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			if c.want != "" {
				if _, perr := PlanSwitch(s, o); perr == nil {
					t.Errorf("PlanSwitch accepted what Preflight refuses")
				}
			}
		})
	}
}

func TestRelabel(t *testing.T) {
	for _, c := range [][3]string{
		{"eth0", "fmbr0", "fmbr0"}, {"eth0:1", "fmbr0", "fmbr0:1"}, {"eth01", "fmbr0", "eth01"}, {"", "fmbr0", ""}, {"lan", "fmbr0", "lan"},
	} {
		if got := relabel(c[0], "eth0", c[1]); got != c[2] {
			t.Errorf("relabel(%q) = %q, want %q", c[0], got, c[2])
		}
		if c[0] != "" && c[0] != "eth01" && c[0] != "lan" {
			if back := relabel(c[2], c[1], "eth0"); back != c[0] {
				t.Errorf("relabel back(%q) = %q, want %q", c[2], back, c[0])
			}
		}
	}
}
