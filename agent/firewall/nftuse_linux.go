package firewall

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// nftConntrackExprs are the nf_tables expressions whose rules make the
// kernel track connections of their family (each takes a conntrack
// reference when the rule is added, whether or not a packet ever reaches
// it). "match" and "target" are iptables-nft's xtables compat expressions,
// named by their payload (conntrackUses).
var nftConntrackExprs = map[string]bool{
	"ct": true, "connlimit": true, "synproxy": true, "flow_offload": true,
	"masq": true, "nat": true, "redir": true,
}

// readNftUse asks nf_tables, in the namespace at path, for the base chains
// of type nat and the rules using conntrack of family f (its own family or
// inet). Our own notrack chains do not count: their CT target is what they
// are for. A hooked nat chain settles it: the rules (the larger dump; a
// Docker host has both) are read only without one.
func readNftUse(path string, f Family) (*nftUse, error) {
	u := &nftUse{}
	err := kernel.InNetns(path, func() error {
		chains, err := nftDump(unix.NFT_MSG_GETCHAIN)
		if err != nil {
			return err
		}
		for _, m := range chains {
			fam, table, name, typ, base, err := parseNftChain(m)
			if err != nil {
				return err
			}
			if base && typ == "nat" && familyCovers(f, fam) {
				u.natChain = nftName(fam, table, name)
				return nil
			}
		}
		rules, err := nftDump(unix.NFT_MSG_GETRULE)
		if err != nil {
			return err
		}
		for _, m := range rules {
			fam, table, chain, uses, err := parseNftRule(m)
			if err != nil {
				return err
			}
			if uses && familyCovers(f, fam) && !ownNoTrack(fam, table, chain) {
				u.ctRule = nftName(fam, table, chain)
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading nf_tables' chains and rules: %w", err)
	}
	return u, nil
}

// nftDump sends one nf_tables dump request of every family and returns the
// messages, each starting with its nfgenmsg. A dump interrupted by a
// concurrent change is asked again (twice at most).
func nftDump(msgType int) ([][]byte, error) {
	var err error
	for range 3 {
		req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|msgType, unix.NLM_F_DUMP)
		req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.NFPROTO_UNSPEC, Version: nl.NFNETLINK_V0})
		var msgs [][]byte
		msgs, err = req.Execute(unix.NETLINK_NETFILTER, 0)
		if !errors.Is(err, nl.ErrDumpInterrupted) {
			return msgs, err
		}
	}
	return nil, err
}

// parseNftChain reads one chain message: its family, table and name, its
// type ("filter", "nat", "route"; base chains only) and whether it is a
// base chain (hooked).
func parseNftChain(m []byte) (fam uint8, table, name, typ string, base bool, err error) {
	fam, err = walkNftMessage(m, "chain", func(t uint16, v []byte) error {
		switch t {
		case unix.NFTA_CHAIN_TABLE:
			table = nlString(v)
		case unix.NFTA_CHAIN_NAME:
			name = nlString(v)
		case unix.NFTA_CHAIN_TYPE:
			typ = nlString(v)
		case unix.NFTA_CHAIN_HOOK:
			base = true
		}
		return nil
	})
	return fam, table, name, typ, base, err
}

// parseNftRule reads one rule message: its family, table and chain, and
// whether one of its expressions uses conntrack.
func parseNftRule(m []byte) (fam uint8, table, chain string, uses bool, err error) {
	fam, err = walkNftMessage(m, "rule", func(t uint16, v []byte) error {
		switch t {
		case unix.NFTA_RULE_TABLE:
			table = nlString(v)
		case unix.NFTA_RULE_CHAIN:
			chain = nlString(v)
		case unix.NFTA_RULE_EXPRESSIONS:
			return walkAttrs(v, func(t uint16, elem []byte) error {
				if t != unix.NFTA_LIST_ELEM {
					return nil
				}
				u, err := exprUsesConntrack(elem)
				uses = uses || u
				return err
			})
		}
		return nil
	})
	return fam, table, chain, uses, err
}

// walkNftMessage calls fn for each attribute of an nf_tables message after
// its nfgenmsg and returns the message's family.
func walkNftMessage(m []byte, what string, fn func(typ uint16, value []byte) error) (uint8, error) {
	if len(m) < nl.SizeofNfgenmsg {
		return 0, fmt.Errorf("nf_tables %s message of %d bytes", what, len(m))
	}
	if err := walkAttrs(m[nl.SizeofNfgenmsg:], fn); err != nil {
		return 0, fmt.Errorf("nf_tables %s message: %w", what, err)
	}
	return m[0], nil
}

// exprUsesConntrack reads one expression (a list element): its name, and
// for an xtables compat match or target the extension's name.
func exprUsesConntrack(elem []byte) (bool, error) {
	var name string
	var data []byte
	err := walkAttrs(elem, func(t uint16, v []byte) error {
		switch t {
		case unix.NFTA_EXPR_NAME:
			name = nlString(v)
		case unix.NFTA_EXPR_DATA:
			data = v
		}
		return nil
	})
	switch {
	case err != nil:
		return false, err
	case nftConntrackExprs[name]:
		return true, nil
	case name != "match" && name != "target":
		return false, nil
	}
	var ext string
	err = walkAttrs(data, func(t uint16, v []byte) error {
		if t == unix.NFTA_MATCH_NAME { // == NFTA_TARGET_NAME
			ext = nlString(v)
		}
		return nil
	})
	return conntrackUses[ext], err
}

// familyCovers reports whether a table of nf_tables family fam applies to
// packets of f.
func familyCovers(f Family, fam uint8) bool {
	if fam == unix.NFPROTO_INET {
		return true
	}
	if f == IPv6 {
		return fam == unix.NFPROTO_IPV6
	}
	return fam == unix.NFPROTO_IPV4
}

// ownNoTrack reports whether a chain is one of our raw notrack chains (as
// iptables-nft makes them: table raw of family ip or ip6).
func ownNoTrack(fam uint8, table, chain string) bool {
	return fam != unix.NFPROTO_INET && table == "raw" && (chain == NoTrackChain || chain == NoTrackOutputChain)
}

func nftName(fam uint8, table, chain string) string {
	names := map[uint8]string{unix.NFPROTO_INET: "inet", unix.NFPROTO_IPV4: "ip", unix.NFPROTO_IPV6: "ip6"}
	return fmt.Sprintf("%s %s %s", names[fam], table, chain)
}

func nlString(v []byte) string { return strings.TrimRight(string(v), "\x00") }
