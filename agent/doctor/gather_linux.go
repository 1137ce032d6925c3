package doctor

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/firewall"
)

// Gather collects the Facts of this host: the agent's status and members,
// kernel settings, iptables, network managers, file modes, and probes sent
// to every member (TCP connect to gossip, UDP to the data plane, ICMP
// timestamp for the clock).
func Gather(ctx context.Context, o GatherOptions) Facts {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	f := Facts{ConfigErr: o.ConfigErr, Mode: o.Mode, Iface: o.Iface, Bridge: o.Bridge,
		DataPort: o.DataPort, MTUOverride: o.MTUOverride}
	underlay := fromAgent(ctx, o, &f)
	if f.Mode == "flat" || f.Mode == "wireguard" {
		f.DataPort = 0 // flat: bridged, no port; wireguard: its port is not in the status yet
	}
	if f.Iface == "" && underlay.IsValid() {
		f.Iface = ifaceWithAddr(underlay)
	}
	f.IPv6 = underlay.Is6()
	if ifi, err := net.InterfaceByName(f.Iface); err == nil && f.Iface != "" {
		f.UnderlayMTU = ifi.MTU
	}
	if ifi, err := net.InterfaceByName(f.Bridge); err == nil && f.Bridge != "" {
		f.BridgeMTU = ifi.MTU
	}
	f.Forwarding = readSysctl("net/ipv4/ip_forward")
	f.BrNetfilter = readSysctl("net/bridge/bridge-nf-call-iptables")
	if out, err := exec.CommandContext(ctx, "iptables", "-w", "5", "-S", "FORWARD").CombinedOutput(); err != nil {
		f.IptablesErr = strings.TrimSpace(string(out) + " " + err.Error())
	} else if f.ForwardPolicy, f.ForwardJump, err = ParseForward(string(out), firewall.ForwardChain); err != nil {
		f.IptablesErr = err.Error()
	}
	if f.Mode == "flat" {
		f.Managers = nicManagers(ctx, []string{f.Iface, f.Bridge})
	} else {
		var err error
		if f.MemberSet, f.MemberSetExists, err = firewall.MemberSetAddrs("", memberSetFamily(f)); err != nil {
			f.MemberSetErr = err.Error()
		}
	}
	f.StateDir = pathInfo(o.StateDir)
	f.Socket = pathInfo(o.Socket)
	if o.Socket != "" {
		f.SocketDir = pathInfo(filepath.Dir(o.Socket))
	}
	probePeers(ctx, &f, o.Timeout)
	gatherDirect(o, &f)
	return f
}

// fromAgent fills what the agent knows and returns its underlay address.
func fromAgent(ctx context.Context, o GatherOptions, f *Facts) netip.Addr {
	if o.Client == nil || o.ConfigErr != "" {
		return netip.Addr{}
	}
	var st api.Status
	if err := o.Client.Do(ctx, "GET", "/status", nil, &st); err != nil {
		f.AgentErr = err.Error()
		return netip.Addr{}
	}
	f.Mode, f.PlaneMTU = st.Mode, st.MTU
	if st.Bridge != "" {
		f.Bridge = st.Bridge
	}
	var peers []api.Peer
	if err := o.Client.Do(ctx, "GET", "/peers", nil, &peers); err != nil {
		f.AgentErr = err.Error()
	}
	for _, p := range peers {
		addr, _ := netip.ParseAddr(p.Addr)
		under, _ := netip.ParseAddr(p.Underlay)
		f.Peers = append(f.Peers, Peer{Name: p.Name, Addr: addr, Port: p.Port, Underlay: under, State: p.State, Self: p.Self})
	}
	u, _ := netip.ParseAddr(st.Underlay)
	return u
}

// probePeers tries every other member that has not left, in parallel.
func probePeers(ctx context.Context, f *Facts, timeout time.Duration) {
	var wg sync.WaitGroup
	for i := range f.Peers {
		p := &f.Peers[i]
		if p.Self || p.State == "left" {
			continue
		}
		wg.Add(1)
		go func(id uint16) {
			defer wg.Done()
			p.GossipTCP = probeTCP(ctx, p.Addr, p.Port, timeout)
			under := p.Underlay
			if !under.IsValid() {
				under = p.Addr
			}
			p.DataPlane = probeUDP(under, f.DataPort, timeout)
			d, err := measureSkew(p.Addr, id, timeout)
			if err != nil {
				p.SkewErr = err.Error()
			} else {
				p.Skew, p.SkewOK = d, true
			}
		}(uint16(os.Getpid()) + uint16(i))
	}
	wg.Wait()
}

func readSysctl(key string) string {
	b, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func pathInfo(p string) PathInfo {
	if p == "" {
		return PathInfo{}
	}
	st, err := os.Lstat(p)
	if err != nil {
		return PathInfo{Path: p}
	}
	uid := -1
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		uid = int(s.Uid)
	}
	return PathInfo{Path: p, Exists: true, Mode: st.Mode(), UID: uid}
}

// ifaceWithAddr names the interface holding a.
func ifaceWithAddr(a netip.Addr) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifi := range ifs {
		addrs, _ := ifi.Addrs()
		for _, x := range addrs {
			if ipn, ok := x.(*net.IPNet); ok {
				if b, ok := netip.AddrFromSlice(ipn.IP); ok && b.Unmap() == a {
					return ifi.Name
				}
			}
		}
	}
	return ""
}

// nicManagers asks NetworkManager (nmcli) and systemd-networkd (its state
// files) about each interface, when they run.
func nicManagers(ctx context.Context, ifaces []string) []NICManager {
	var out []NICManager
	if _, err := os.Stat("/run/NetworkManager"); err == nil {
		if res, err := exec.CommandContext(ctx, "nmcli", "-t", "-f", "DEVICE,STATE", "device", "status").Output(); err == nil {
			for _, ifc := range ifaces {
				if managed, found, st := ParseNmcli(string(res), ifc); found {
					out = append(out, NICManager{Manager: "NetworkManager", Iface: ifc, Managed: managed, Detail: st})
				}
			}
		}
	}
	if _, err := os.Stat("/run/systemd/netif/links"); err == nil {
		for _, ifc := range ifaces {
			ifi, err := net.InterfaceByName(ifc)
			if err != nil || ifc == "" {
				continue
			}
			b, err := os.ReadFile(filepath.Join("/run/systemd/netif/links", strconv.Itoa(ifi.Index)))
			if err != nil {
				continue
			}
			managed, st := ParseNetworkdLink(string(b))
			out = append(out, NICManager{Manager: "systemd-networkd", Iface: ifc, Managed: managed, Detail: fmt.Sprintf("admin state %s", st)})
		}
	}
	return out
}
