package agent

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Docker moves and addresses the container end itself after Join, and a
// container restarted with the same --ip comes back with a new MAC. The
// attach path announces the address (gratuitous ARP) so neighbours (the
// LAN in flat mode, this host's bridge in every mode) forget the old MAC at
// once; for Docker the agent does the same once Docker has configured the
// interface: it finds the container's namespace through the kernel's id of
// the host end's peer namespace, then announces from inside it.

// dockerAnnounceWait bounds the wait for Docker to finish the interface.
const dockerAnnounceWait = 5 * time.Second

// forgetNeighbour removes this host's neighbour entry for addr on the
// bridge (a stale MAC of the container's previous life).
func forgetNeighbour(bridge string, addr netip.Addr) {
	l, err := netlink.LinkByName(bridge)
	if err != nil {
		return
	}
	_ = netlink.NeighDel(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V4, IP: addr.AsSlice()})
}

// announceDocker waits (in the background, until done or the bound) for the
// peer of hostIf to sit in a container namespace with addr configured, then
// sends the gratuitous ARP from there.
func (a *Agent) announceDocker(hostIf string, addr netip.Addr) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerAnnounceWait)
	go func() {
		defer cancel()
		for {
			path, ifname, ok := dockerPeer(hostIf, addr)
			if ok {
				if err := kernel.SendGratuitousARP(path, ifname, addr); err != nil {
					a.log.Debug("announcing a docker container", "addr", addr, "error", err)
				}
				return
			}
			select {
			case <-ctx.Done():
				a.log.Debug("docker container not configured in time: not announced", "addr", addr, "host_if", hostIf)
				return
			case <-a.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
}

// dockerPeer finds the namespace (as /proc/PID/ns/net) holding hostIf's
// peer once that peer carries addr, and the peer's name there.
func dockerPeer(hostIf string, addr netip.Addr) (string, string, bool) {
	h, err := netlink.LinkByName(hostIf)
	if err != nil || h.Attrs().NetNsID < 0 {
		return "", "", false
	}
	nsid, peerIndex := h.Attrs().NetNsID, h.Attrs().ParentIndex
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	seen := map[uint64]bool{}
	for _, p := range procs {
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil || seen[st.Ino] {
			continue
		}
		seen[st.Ino] = true
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		id, err := netlink.GetNetNsIdByFd(int(f.Fd()))
		f.Close()
		if err != nil || id != nsid {
			continue
		}
		ifname, ok := peerWithAddr(p, peerIndex, addr)
		return p, ifname, ok
	}
	return "", "", false
}

func peerWithAddr(nsPath string, index int, addr netip.Addr) (string, bool) {
	ns, err := kernel.OpenNS(nsPath)
	if err != nil {
		return "", false
	}
	defer ns.Close()
	l, err := ns.H.LinkByIndex(index)
	if err != nil {
		return "", false
	}
	addrs, err := ns.H.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return "", false
	}
	for _, ad := range addrs {
		if ip, ok := netip.AddrFromSlice(ad.IP); ok && ip.Unmap() == addr {
			return l.Attrs().Name, l.Attrs().Flags&unix.IFF_UP != 0
		}
	}
	return "", false
}
