package kernel

import (
	"encoding/binary"
	"fmt"
	"net"
	"sort"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The netlink library does not expose the bridge's STP state and forward
// delay (IFLA_BR_STP_STATE, IFLA_BR_FORWARD_DELAY), so these two helpers
// speak rtnetlink directly, on a thread inside the namespace.

// BridgeSTP reads the STP state (0 = off) and forward delay (centiseconds)
// of the bridge with the given index (the netlink library cannot read them).
func BridgeSTP(ns *NS, index int) (stp, fwdDelay uint32, err error) {
	err = ns.Do(func() error {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(index)
		req.AddData(msg)
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		if err != nil {
			return err
		}
		if len(msgs) != 1 {
			return fmt.Errorf("got %d answers for link %d", len(msgs), index)
		}
		data, err := bridgeInfoData(msgs[0])
		if err != nil {
			return err
		}
		for _, a := range data {
			if len(a.Value) < 4 {
				continue
			}
			switch a.Attr.Type {
			case nl.IFLA_BR_STP_STATE:
				stp = binary.NativeEndian.Uint32(a.Value)
			case nl.IFLA_BR_FORWARD_DELAY:
				fwdDelay = binary.NativeEndian.Uint32(a.Value)
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("reading stp settings of link %d: %w", index, err)
	}
	return stp, fwdDelay, nil
}

// bridgeInfoData extracts IFLA_LINKINFO/IFLA_INFO_DATA from an RTM_NEWLINK.
func bridgeInfoData(m []byte) ([]syscall.NetlinkRouteAttr, error) {
	if len(m) < unix.SizeofIfInfomsg {
		return nil, fmt.Errorf("short link message")
	}
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
	if err != nil {
		return nil, err
	}
	for _, a := range attrs {
		if a.Attr.Type != unix.IFLA_LINKINFO {
			continue
		}
		infos, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return nil, err
		}
		for _, i := range infos {
			if i.Attr.Type == nl.IFLA_INFO_DATA {
				return nl.ParseRouteAttr(i.Value)
			}
		}
	}
	return nil, fmt.Errorf("link has no bridge info data")
}

// setBridgeSTPOff turns STP off, then sets the forward delay to 0 (two
// messages: the kernel checks the delay against STP limits before it
// applies the STP state of the same message).
func setBridgeSTPOff(ns *NS, index int) error {
	for _, attr := range []int{nl.IFLA_BR_STP_STATE, nl.IFLA_BR_FORWARD_DELAY} {
		if err := setBridgeUint32(ns, index, attr, 0); err != nil {
			return fmt.Errorf("turning stp off on link %d: %w", index, err)
		}
	}
	return nil
}

func setBridgeUint32(ns *NS, index, attr int, v uint32) error {
	return ns.Do(func() error {
		req := bridgeRequest(unix.NLM_F_ACK, bridgeMsg{index: index, attrs: map[int]uint32{attr: v}})
		_, err := req.Execute(unix.NETLINK_ROUTE, 0)
		return err
	})
}

// CreateBridge creates the bridge name in ns with the given MAC (and MTU
// when > 0), STP off and forward delay 0, in one RTM_NEWLINK with
// NLM_F_EXCL: it fails with EEXIST when a link of that name exists (the
// caller decides whether that link is compatible). The netlink library
// cannot set STP and forward delay at creation, hence the raw message.
func CreateBridge(ns *NS, name string, mac net.HardwareAddr, mtu int) error {
	if err := ValidateIfName(name); err != nil {
		return err
	}
	return ns.Do(func() error {
		req := bridgeRequest(unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK, bridgeMsg{
			name: name, mac: mac, mtu: mtu,
			attrs: map[int]uint32{nl.IFLA_BR_STP_STATE: 0, nl.IFLA_BR_FORWARD_DELAY: 0},
		})
		_, err := req.Execute(unix.NETLINK_ROUTE, 0)
		return err
	})
}

// bridgeMsg is what one raw RTM_NEWLINK for a bridge carries: the link by
// index or by name, optional MAC and MTU, and IFLA_BR_* u32 attributes.
type bridgeMsg struct {
	index int
	name  string
	mac   net.HardwareAddr
	mtu   int
	attrs map[int]uint32
}

// bridgeRequest builds the one raw bridge RTM_NEWLINK of this package.
// Attributes go in ascending type order (STP state before forward delay).
func bridgeRequest(flags int, m bridgeMsg) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, flags)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(m.index)
	req.AddData(msg)
	if m.name != "" {
		req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(m.name)))
	}
	if len(m.mac) > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, []byte(m.mac)))
	}
	if m.mtu > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(m.mtu))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	keys := make([]int, 0, len(m.attrs))
	for k := range m.attrs {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		data.AddRtAttr(k, nl.Uint32Attr(m.attrs[k]))
	}
	req.AddData(info)
	return req
}
