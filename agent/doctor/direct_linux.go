package doctor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// gatherDirect fills f.Direct: the settings, the underlay's subnets and
// the agent's direct routes on it, rp_filter, the cloud (DMI) and, with
// direct routing on, a ping to every peer routed directly, sent from this
// host's container address (the packet direct-routed traffic is).
func gatherDirect(o GatherOptions, f *Facts) {
	d := &f.Direct
	d.On, d.WGCleartext = o.DirectRouting, o.WGDirectCleartext
	d.Cloud, d.CloudFix = CloudFromDMI(readDMI("sys_vendor"), readDMI("product_name"), readDMI("bios_vendor"),
		readDMI("bios_version"), readDMI("chassis_asset_tag"))
	if f.Iface == "" {
		return
	}
	if err := kernel.ValidateIfName(f.Iface); err != nil {
		d.Err = err.Error()
		return
	}
	d.RPFilterAll = readSysctl("net/ipv4/conf/all/rp_filter")
	d.RPFilterIface = readSysctl("net/ipv4/conf/" + f.Iface + "/rp_filter")
	ns, err := kernel.OpenNS("")
	if err != nil {
		d.Err = err.Error()
		return
	}
	defer ns.Close()
	have, err := kernel.Observe(ns, kernel.Scope{AddrLinks: []string{f.Iface}, RouteLinks: []string{f.Iface}})
	if err != nil {
		d.Err = fmt.Sprintf("reading %s: %v", f.Iface, err)
		return
	}
	d.Connected = kernel.Connected(have.Addrs)
	d.Routed = map[netip.Addr]int{}
	for _, r := range have.Routes {
		if r.Gw.IsValid() {
			d.Routed[r.Gw]++
			if !d.Source.IsValid() && r.Src.IsValid() {
				d.Source = r.Src
			}
		}
	}
	if !d.Source.IsValid() {
		d.Source = firstIPv4(f.Bridge)
	}
	if d.On {
		probeDirect(f, o.Timeout)
	}
}

// probeDirect pings every same-subnet peer from the container address
// d.Source, after one from the underlay address (a peer that ignores pings
// cannot be tested).
func probeDirect(f *Facts, timeout time.Duration) {
	same, _ := directPeers(*f)
	want := map[string]bool{}
	for _, p := range same {
		want[p.Name] = f.Direct.Routed[p.Underlay] > 0 // the agent routes it directly
	}
	var wg sync.WaitGroup
	for i := range f.Peers {
		p := &f.Peers[i]
		if !want[p.Name] {
			continue
		}
		wg.Add(1)
		go func(id uint16) {
			defer wg.Done()
			p.Direct = directProbe(f.Direct.Source, p.Underlay, id, timeout)
		}(uint16(os.Getpid()) + 0x4000 + uint16(i))
	}
	wg.Wait()
}

func directProbe(src, dst netip.Addr, id uint16, timeout time.Duration) Probe {
	switch {
	case !dst.Is4():
		return Probe{Detail: "not tested: the probe speaks IPv4 only"}
	case !src.Is4():
		return Probe{Detail: "not tested: this host has no container address yet (no block)"}
	}
	if err := ping(netip.IPv4Unspecified(), dst, id, 1, timeout); err != nil {
		return Probe{Detail: "not tested: it does not answer a ping from this host's underlay address either (" + err.Error() + ")"}
	}
	if err := ping(src, dst, id, 2, timeout); err != nil {
		return Probe{Tried: true, Detail: fmt.Sprintf("no answer to a ping from %s to %s, while one from the underlay address is answered", src, dst)}
	}
	return Probe{Tried: true, OK: true, Detail: "answered"}
}

// ping sends one ICMP echo request from src (unspecified: the kernel
// chooses) to dst and waits for its reply. Needs a raw socket (root).
func ping(src, dst netip.Addr, id, seq uint16, timeout time.Duration) error {
	_, err := icmpExchange(src, dst, echoRequest(id, seq), timeout, func(b []byte) bool {
		gid, gseq, err := parseEchoReply(b)
		return err == nil && gid == id && gseq == seq
	})
	if errors.Is(err, errNoICMPReply) {
		return fmt.Errorf("no reply within %s", timeout)
	}
	return err
}

// firstIPv4 is the first IPv4 address on link name (the bridge holds this
// host's gateways); zero when there is none.
func firstIPv4(name string) netip.Addr {
	ifi, err := net.InterfaceByName(name)
	if err != nil || name == "" {
		return netip.Addr{}
	}
	addrs, _ := ifi.Addrs()
	for _, x := range addrs {
		if ipn, ok := x.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(ipn.IP); ok && a.Unmap().Is4() {
				return a.Unmap()
			}
		}
	}
	return netip.Addr{}
}

// readDMI reads one DMI field (what the firmware says the machine is).
func readDMI(field string) string {
	b, err := os.ReadFile("/sys/class/dmi/id/" + field)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
