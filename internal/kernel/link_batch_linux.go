package kernel

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// DeleteLinks deletes links in ns in one kernel batch. Deleting a link
// waits for RCU in the kernel (10-20 ms for a veth on a busy host), one link
// after another under the RTNL lock; links of one group are deleted with
// one RTM_DELLINK and one wait (unregister_netdevice_many). So it puts the
// links in a group of their own (a random number, never one the host uses:
// a group left behind by a crash matches no later batch) and deletes the
// group. One link is deleted alone. Should the group delete fail (a kernel
// that refuses it, a link gone meanwhile), the links are deleted one by one;
// a link already gone is not an error.
func DeleteLinks(ns *NS, links []netlink.Link) error {
	if len(links) == 0 {
		return nil
	}
	if len(links) > 1 {
		group := uint32(1<<24) + rand.Uint32N(1<<30)
		err := setGroup(ns, links, group)
		if err == nil {
			err = deleteGroup(ns, group)
		}
		if err == nil {
			return nil
		}
	}
	var errs []error
	for _, l := range links {
		if err := ns.H.LinkDel(l); err != nil && !IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting %s: %w", l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

func setGroup(ns *NS, links []netlink.Link, group uint32) error {
	for _, l := range links {
		if err := ns.H.LinkSetGroup(l, int(group)); err != nil {
			return fmt.Errorf("grouping %s: %w", l.Attrs().Name, err)
		}
	}
	return nil
}

// deleteGroup sends RTM_DELLINK for every link of group in ns.
func deleteGroup(ns *NS, group uint32) error {
	return InNetns(ns.Path, func() error {
		req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
		req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
		if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
			return fmt.Errorf("deleting link group %d: %w", group, err)
		}
		return nil
	})
}
