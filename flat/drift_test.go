package flat

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckDrift(t *testing.T) {
	nicMAC := "02:00:00:00:00:10"
	rec := Record{Iface: "eth0", Bridge: "br0", Original: Snapshot{
		NIC: &Link{Name: "eth0", Index: 2, MAC: nicMAC, Up: true},
		Addrs: []Addr{
			{Prefix: netip.MustParsePrefix("10.0.0.10/24")},
			{Prefix: netip.MustParsePrefix("fe80::1/64")}, // link-local: stays on the NIC
		},
		Routes: []Route{{Table: tableMain, Type: routeUnicast, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("10.0.0.1"), Dev: "eth0"}},
	}}
	good := func() Snapshot {
		return Snapshot{
			NIC: &Link{Name: "eth0", Index: 2, MAC: nicMAC, Up: true, Master: "br0", MasterIndex: 5},
			Bridge: &Bridge{Link: Link{Name: "br0", Index: 5, Kind: "bridge", MAC: nicMAC, Up: true},
				Ports:  []string{"eth0", "fmaaa"},
				Addrs:  []Addr{{Prefix: netip.MustParsePrefix("10.0.0.10/24")}},
				Routes: []Route{{Table: tableMain, Type: routeUnicast, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("10.0.0.1"), Dev: "br0"}}},
		}
	}
	fix, host := checkDrift(rec, good(), "br0", []string{"fmaaa"})
	if fix.bridge || len(fix.ports) != 0 || len(host) != 0 {
		t.Fatalf("no drift expected: %+v %v", fix, host)
	}

	cur := good()
	cur.Bridge.STP = true
	cur.Bridge.Link.MAC = "02:00:00:00:00:99"
	cur.NIC.MasterIndex = 0
	cur.Bridge.Ports = []string{}
	fix, host = checkDrift(rec, cur, "br0", []string{"fmaaa", "fmbbb"})
	if !fix.bridge || strings.Join(fix.ports, ",") != "eth0,fmaaa,fmbbb" || len(host) != 0 {
		t.Fatalf("our drift: %+v host %v", fix, host)
	}
	if r := strings.Join(fix.reasons, "; "); !strings.Contains(r, "stp true") || !strings.Contains(r, "instead of the NIC's "+nicMAC) {
		t.Fatalf("reasons: %s", r)
	}

	cur = good()
	cur.Bridge.Addrs = nil
	cur.Bridge.Routes = nil
	fix, host = checkDrift(rec, cur, "br0", nil)
	if fix.bridge || len(fix.ports) != 0 || len(host) != 2 ||
		!strings.Contains(host[0], "address 10.0.0.10/24") || !strings.Contains(host[1], "default route via 10.0.0.1") {
		t.Fatalf("host drift: %+v %q", fix, host)
	}

	cur = good()
	cur.Bridge = nil
	if fix, host = checkDrift(rec, cur, "br0", nil); fix.bridge || len(host) != 1 || !strings.Contains(host[0], "is gone") {
		t.Fatalf("bridge gone: %+v %q", fix, host)
	}
}
