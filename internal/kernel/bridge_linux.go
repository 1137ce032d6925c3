package kernel

import (
	"encoding/binary"
	"fmt"
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
		req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(index)
		req.AddData(msg)
		info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
		info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
		data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
		data.AddRtAttr(attr, nl.Uint32Attr(v))
		req.AddData(info)
		_, err := req.Execute(unix.NETLINK_ROUTE, 0)
		return err
	})
}
