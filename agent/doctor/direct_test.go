package doctor

import (
	"net/netip"
	"strings"
	"testing"
)

// directHost is healthy() with its underlay on 10.0.0.0/24 (b and c) and
// a peer d across a router; direct routing as on says.
func directHost(on bool) Facts {
	f := healthy()
	f.Peers = append(append([]Peer(nil), f.Peers...), peer("d", "10.9.0.4", 0))
	f.Direct = DirectFacts{On: on, Connected: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")},
		Source: netip.MustParseAddr("10.213.0.1"), RPFilterAll: "0", RPFilterIface: "2",
		Routed: map[netip.Addr]int{netip.MustParseAddr("10.0.0.2"): 2, netip.MustParseAddr("10.0.0.3"): 1}}
	if on {
		for i := range f.Peers[1:3] {
			f.Peers[1+i].Direct = Probe{Tried: true, OK: true, Detail: "answered"}
		}
	}
	return f
}

func TestDirectRoutingCheck(t *testing.T) {
	cases := []struct {
		name   string
		status Status
		want   []string
		f      func() Facts
	}{
		{"off: names who would go direct and when it is safe", OK,
			[]string{"off: every peer through the vxlan tunnel", "b 10.0.0.2, c 10.0.0.3 would be routed directly via eth1 [10.0.0.1/24]",
				"d 10.9.0.4 would keep the tunnel", "source/destination checks are off"},
			func() Facts { return directHost(false) }},
		{"off on a cloud: says why not", OK, []string{"here: this host runs on Amazon EC2", "--no-source-dest-check"},
			func() Facts {
				f := directHost(false)
				f.Direct.Cloud, f.Direct.CloudFix = CloudFromDMI("Amazon EC2", "t3.large")
				return f
			}},
		{"on, every direct peer answers", OK,
			[]string{"on: direct via eth1", "b 10.0.0.2 (2 direct routes), c 10.0.0.3 (1 direct route)", "through the vxlan tunnel: d 10.9.0.4",
				"every direct peer tested answers a ping from container address 10.213.0.1"},
			func() Facts { return directHost(true) }},
		{"on, a same-subnet peer unreachable directly", Fail,
			[]string{"unreachable directly from container address 10.213.0.1: c (no answer", "source/destination check"},
			func() Facts {
				f := directHost(true)
				f.Peers[2].Direct = Probe{Tried: true, Detail: "no answer to a ping from 10.213.0.1 to 10.0.0.3"}
				return f
			}},
		{"on, strict rp_filter", Warn, []string{"rp_filter = 1 (strict) on eth1", "net.ipv4.conf.eth1.rp_filter=2"},
			func() Facts {
				f := directHost(true)
				f.Direct.RPFilterAll, f.Direct.RPFilterIface = "1", "0"
				return f
			}},
		{"on, strict rp_filter on the device only", Warn, []string{"rp_filter = 1 (strict)"},
			func() Facts {
				f := directHost(true)
				f.Direct.RPFilterIface = "1"
				return f
			}},
		{"on, strict all but loose on the device: the larger (loose) applies", OK, []string{"every direct peer tested answers"},
			func() Facts {
				f := directHost(true)
				f.Direct.RPFilterAll, f.Direct.RPFilterIface = "1", "2"
				return f
			}},
		{"on, a peer that ignores pings", OK, []string{"not tested: it does not answer a ping"},
			func() Facts {
				f := directHost(true)
				f.Peers[1].Direct = Probe{Detail: "not tested: it does not answer a ping from this host's underlay address either"}
				return f
			}},
		{"wireguard without cleartext", Fail, []string{"--wg-direct-cleartext"},
			func() Facts {
				f := directHost(true)
				f.Mode, f.PlaneMTU, f.BridgeMTU = "wireguard", 1440, 1440
				return f
			}},
		{"wireguard with cleartext", OK, []string{"through the wireguard tunnel: d", "cleartext"},
			func() Facts {
				f := directHost(true)
				f.Mode, f.Direct.WGCleartext = "wireguard", true
				return f
			}},
		{"on, a same-subnet peer without direct routes", OK, []string{"c 10.0.0.3 (no direct route yet: it has no block, or runs without --direct-routing"},
			func() Facts {
				f := directHost(true)
				delete(f.Direct.Routed, netip.MustParseAddr("10.0.0.3"))
				f.Peers[2].Direct = Probe{}
				return f
			}},
		{"flat mode", Skip, []string{"only the vxlan and wireguard planes"},
			func() Facts {
				f := directHost(true)
				f.Mode = "flat"
				return f
			}},
		{"underlay unknown", Skip, []string{"no --iface"},
			func() Facts {
				f := directHost(true)
				f.Iface = ""
				return f
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := result(t, Check(c.f()), "direct-routing")
			for _, w := range c.want {
				if got.Status != c.status || !strings.Contains(got.Detail+" "+got.Fix, w) {
					t.Fatalf("got %s %q (fix %q); want %s containing %q", got.Status, got.Detail, got.Fix, c.status, w)
				}
			}
			if (got.Status == Fail || got.Status == Warn) && got.Fix == "" {
				t.Errorf("%s without a fix", got.Status)
			}
		})
	}
}

func TestCloudFromDMI(t *testing.T) {
	cases := []struct {
		fields []string
		want   string
	}{
		{[]string{"Amazon EC2", "m5.large", "Amazon EC2"}, "Amazon EC2"},
		{[]string{"Xen", "HVM domU", "Xen", "4.11.amazon"}, ""},
		{[]string{"Google", "Google Compute Engine", "Google"}, "Google Compute Engine"},
		{[]string{"Microsoft Corporation", "Virtual Machine", "Microsoft Corporation", "Hyper-V UEFI", "7783-7084-3265-9085-8269-3286-77"}, "Microsoft Azure"},
		{[]string{"Microsoft Corporation", "Virtual Machine", "", "", "0000-0001"}, ""}, // Hyper-V on a desk
		{[]string{"OpenStack Foundation", "OpenStack Nova"}, "OpenStack"},
		{[]string{"QEMU", "Standard PC (Q35 + ICH9, 2009)", "SeaBIOS"}, ""},
		{nil, ""},
	}
	for _, c := range cases {
		if got, fix := CloudFromDMI(c.fields...); got != c.want || (got != "") != (fix != "") {
			t.Errorf("%q: %q %q, want %q", c.fields, got, fix, c.want)
		}
	}
}

func TestEchoPacket(t *testing.T) {
	b := echoRequest(0x1234, 7)
	if checksum(b) != 0 {
		t.Fatalf("checksum of %x does not verify", b)
	}
	if _, _, err := parseEchoReply(b); err == nil {
		t.Fatal("a request parsed as a reply")
	}
	b[0] = icmpEchoReply
	if id, seq, err := parseEchoReply(b); err != nil || id != 0x1234 || seq != 7 {
		t.Fatalf("reply: %x %d %v", id, seq, err)
	}
	if _, _, err := parseEchoReply(b[:5]); err == nil {
		t.Fatal("a short message parsed")
	}
}
