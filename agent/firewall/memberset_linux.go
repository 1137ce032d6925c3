package firewall

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// memberSetType is the ipset type of the member sets.
const memberSetType = "hash:ip"

// ipsetCall runs fn (netlink ipset requests) in the namespace at path. The
// netlink library type-asserts every request error to syscall.Errno and
// panics on any other kind; that panic becomes an error here.
func ipsetCall(path string, fn func() error) (err error) {
	return kernel.InNetns(path, func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("ipset netlink request failed: %v", r)
			}
		}()
		return fn()
	})
}

// readMemberSet lists the member set of family f; exists is false when
// there is no such set. It sends the list request itself: the netlink
// library's IpsetList logs a line for every attribute it does not know
// (a 6.x kernel sends two with every hash:ip set).
func readMemberSet(path string, f Family) (addrs []netip.Addr, exists bool, err error) {
	name := MemberSetName(f)
	var msgs [][]byte
	err = kernel.InNetns(path, func() (err error) {
		req := nl.NewNetlinkRequest(nl.IPSET_CMD_LIST|(unix.NFNL_SUBSYS_IPSET<<8), nl.GetIpsetFlags(nl.IPSET_CMD_LIST))
		req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(unix.AF_NETLINK), Version: nl.NFNETLINK_V0})
		req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_PROTOCOL, nl.Uint8Attr(nl.IPSET_PROTOCOL)))
		req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(name)))
		msgs, err = req.Execute(unix.NETLINK_NETFILTER, 0)
		return err
	})
	if isNoSuchSet(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading ipset %s: %w", name, err)
	}
	for _, m := range msgs {
		typ, fam, entries, err := parseSetMessage(m)
		if err != nil {
			return nil, false, fmt.Errorf("reading ipset %s: %w", name, err)
		}
		if typ != "" && (typ != memberSetType || fam != ipsetFamily(f)) {
			return nil, false, fmt.Errorf("ipset %s is a %s set of family %d, not flatmesh's %s of family %d: "+
				"another program uses the name; remove it (ipset destroy %s)", name, typ, fam, memberSetType, ipsetFamily(f), name)
		}
		addrs = append(addrs, entries...)
		exists = true
	}
	return memberAddrs(addrs, f), exists, nil
}

// parseSetMessage reads one message of an ipset list dump (after the
// 4-byte nfgenmsg): the set's type and family when present, and the
// addresses of its entries.
func parseSetMessage(msg []byte) (typ string, family uint8, entries []netip.Addr, err error) {
	if len(msg) < 4 {
		return "", 0, nil, fmt.Errorf("short message (%d bytes)", len(msg))
	}
	err = walkAttrs(msg[4:], func(t uint16, v []byte) error {
		switch t {
		case nl.IPSET_ATTR_TYPENAME:
			typ = strings.TrimRight(string(v), "\x00")
		case nl.IPSET_ATTR_FAMILY:
			if len(v) > 0 {
				family = v[0]
			}
		case nl.IPSET_ATTR_ADT:
			return walkAttrs(v, func(t uint16, entry []byte) error {
				if t != nl.IPSET_ATTR_DATA {
					return nil
				}
				return walkAttrs(entry, func(t uint16, ip []byte) error {
					if t != nl.IPSET_ATTR_IP {
						return nil
					}
					return walkAttrs(ip, func(_ uint16, raw []byte) error {
						if a, ok := netip.AddrFromSlice(raw); ok {
							entries = append(entries, a)
						}
						return nil
					})
				})
			})
		}
		return nil
	})
	return typ, family, entries, err
}

// walkAttrs calls fn for each netlink attribute in b, with its type
// stripped of the nested and byte-order flags.
func walkAttrs(b []byte, fn func(typ uint16, value []byte) error) error {
	for len(b) >= unix.SizeofNlAttr {
		n := int(nl.NativeEndian().Uint16(b[0:2]))
		typ := nl.NativeEndian().Uint16(b[2:4]) & nl.NLA_TYPE_MASK
		if n < unix.SizeofNlAttr || n > len(b) {
			return fmt.Errorf("malformed attribute (length %d of %d bytes)", n, len(b))
		}
		if err := fn(typ, b[unix.SizeofNlAttr:n]); err != nil {
			return err
		}
		n = (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if n > len(b) {
			break
		}
		b = b[n:]
	}
	return nil
}

// ensureMemberSet makes the member set of family f exist and hold exactly
// the members of that family (one netlink request per change; nothing
// when it already does).
func ensureMemberSet(path string, f Family, members []netip.Addr) error {
	name := MemberSetName(f)
	have, exists, err := readMemberSet(path, f)
	if err != nil {
		return err
	}
	add, del := setDiff(memberAddrs(members, f), have)
	return ipsetCall(path, func() error {
		if !exists {
			err := netlink.IpsetCreate(name, memberSetType, netlink.IpsetCreateOptions{Family: ipsetFamily(f)})
			if err != nil {
				return fmt.Errorf("creating ipset %s (%s): %w (the kernel needs ip_set and xt_set: modprobe ip_set_hash_ip xt_set)",
					name, memberSetType, err)
			}
		}
		for _, a := range add {
			if err := netlink.IpsetAdd(name, &netlink.IPSetEntry{IP: net.IP(a.AsSlice()), Replace: true}); err != nil {
				return fmt.Errorf("adding %s to ipset %s: %w", a, name, err)
			}
		}
		for _, a := range del {
			err := netlink.IpsetDel(name, &netlink.IPSetEntry{IP: net.IP(a.AsSlice()), Replace: true})
			if err != nil && !errors.Is(err, nl.IPSetError(nl.IPSET_ERR_EXIST)) {
				return fmt.Errorf("deleting %s from ipset %s: %w", a, name, err)
			}
		}
		return nil
	})
}

// ensureMemberSets runs ensureMemberSet for o's families when o's rules
// name the sets (before any rule that does is written).
func ensureMemberSets(path string, o Options) error {
	if !o.usesMemberSet() {
		return nil
	}
	for _, f := range families(o) {
		if err := ensureMemberSet(path, f, o.Members); err != nil {
			return err
		}
	}
	return nil
}

// checkMemberSets reports how the member sets differ from o.Members.
func checkMemberSets(path string, o Options) ([]string, error) {
	if !o.usesMemberSet() {
		return nil, nil
	}
	var out []string
	for _, f := range families(o) {
		have, exists, err := readMemberSet(path, f)
		if err != nil {
			return nil, err
		}
		if !exists {
			out = append(out, fmt.Sprintf("%s: ipset %s (the members allowed on the tunnel ports) is missing", f, MemberSetName(f)))
			continue
		}
		add, del := setDiff(memberAddrs(o.Members, f), have)
		if len(add) > 0 {
			out = append(out, fmt.Sprintf("%s: ipset %s lacks members %v", f, MemberSetName(f), add))
		}
		if len(del) > 0 {
			out = append(out, fmt.Sprintf("%s: ipset %s holds non-members %v", f, MemberSetName(f), del))
		}
	}
	return out, nil
}

// destroyMemberSets removes both member sets. A set still named by a rule
// (the other half of Remove/RemoveNoTrack has not run yet) stays for that
// one to remove; a missing set is no error.
func destroyMemberSets(path string) error {
	var errs []error
	for _, f := range []Family{IPv4, IPv6} {
		name := MemberSetName(f)
		err := ipsetCall(path, func() error { return netlink.IpsetDestroy(name) })
		if err == nil || isNoSuchSet(err) || errors.Is(err, nl.IPSetError(nl.IPSET_ERR_REFERENCED)) ||
			errors.Is(err, nl.IPSetError(nl.IPSET_ERR_BUSY)) {
			continue
		}
		errs = append(errs, fmt.Errorf("destroying ipset %s: %w", name, err))
	}
	return errors.Join(errs...)
}

// isNoSuchSet reports whether err is the kernel's "set does not exist".
func isNoSuchSet(err error) bool {
	return errors.Is(err, syscall.ENOENT)
}

func ipsetFamily(f Family) uint8 {
	if f == IPv6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// SyncMembers makes the member sets hold exactly o.Members (when o's rules
// name the sets) without reading or writing any table: a member change is
// this call; Ensure/EnsureAll sync the sets too.
func SyncMembers(o Options) error {
	return locked(o.NetnsPath, func(path string) error { return ensureMemberSets(path, o) })
}

// MemberSetAddrs returns the addresses in the member set of family f in
// the namespace spec ("" = ours; a path or a name under /run/netns);
// exists is false when there is no set.
func MemberSetAddrs(spec string, f Family) (addrs []netip.Addr, exists bool, err error) {
	err = locked(spec, func(path string) (err error) {
		addrs, exists, err = readMemberSet(path, f)
		return err
	})
	return addrs, exists, err
}

// SetMemberSet makes the member set of family f in the namespace spec
// exist and hold exactly addrs (for tools that copy flatmesh's firewall,
// the bench's reference paths).
func SetMemberSet(spec string, f Family, addrs []netip.Addr) error {
	return locked(spec, func(path string) error { return ensureMemberSet(path, f, addrs) })
}
