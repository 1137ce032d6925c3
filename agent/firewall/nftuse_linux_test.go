package firewall

import (
	"testing"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// nftMessage builds an nf_tables message as the kernel sends it: nfgenmsg,
// then attributes.
func nftMessage(fam uint8, attrs ...*nl.RtAttr) []byte {
	b := (&nl.Nfgenmsg{NfgenFamily: fam, Version: nl.NFNETLINK_V0}).Serialize()
	for _, a := range attrs {
		b = append(b, a.Serialize()...)
	}
	return b
}

func nested(typ int, children ...*nl.RtAttr) *nl.RtAttr {
	a := nl.NewRtAttr(typ|unix.NLA_F_NESTED, nil)
	for _, c := range children {
		a.AddChild(c)
	}
	return a
}

func str(typ int, s string) *nl.RtAttr { return nl.NewRtAttr(typ, nl.ZeroTerminated(s)) }

// expr is one rule expression: its name and, for xtables compat, the
// extension's name.
func expr(name, ext string) *nl.RtAttr {
	e := nested(unix.NFTA_LIST_ELEM, str(unix.NFTA_EXPR_NAME, name))
	if ext != "" {
		e.AddChild(nested(unix.NFTA_EXPR_DATA, str(unix.NFTA_MATCH_NAME, ext)))
	}
	return e
}

var (
	natChainMsg = nftMessage(unix.NFPROTO_IPV4, str(unix.NFTA_CHAIN_TABLE, "nat"), str(unix.NFTA_CHAIN_NAME, "POSTROUTING"),
		nested(unix.NFTA_CHAIN_HOOK, nl.NewRtAttr(unix.NFTA_HOOK_HOOKNUM, nl.BEUint32Attr(4))), str(unix.NFTA_CHAIN_TYPE, "nat"))
	userChainMsg = nftMessage(unix.NFPROTO_IPV4, str(unix.NFTA_CHAIN_TABLE, "nat"), str(unix.NFTA_CHAIN_NAME, "DOCKER"))
	ctRuleMsg    = nftMessage(unix.NFPROTO_INET, str(unix.NFTA_RULE_TABLE, "fw"), str(unix.NFTA_RULE_CHAIN, "input"),
		nested(unix.NFTA_RULE_EXPRESSIONS, expr("payload", ""), expr("ct", ""), expr("immediate", "")))
	compatRuleMsg = nftMessage(unix.NFPROTO_IPV4, str(unix.NFTA_RULE_TABLE, "filter"), str(unix.NFTA_RULE_CHAIN, "FORWARD"),
		nested(unix.NFTA_RULE_EXPRESSIONS, expr("match", "conntrack"), expr("immediate", "")))
	plainRuleMsg = nftMessage(unix.NFPROTO_IPV6, str(unix.NFTA_RULE_TABLE, "filter"), str(unix.NFTA_RULE_CHAIN, "INPUT"),
		nested(unix.NFTA_RULE_EXPRESSIONS, expr("payload", ""), expr("match", "udp"), expr("immediate", "")))
)

// The parsers read what the kernel's chain and rule dumps hold: a hooked
// nat chain apart from a user chain, a ct expression or a compat
// conntrack match apart from rules without either.
func TestParseNftMessages(t *testing.T) {
	for _, c := range []struct {
		m                []byte
		fam              uint8
		table, name, typ string
		base             bool
	}{
		{natChainMsg, unix.NFPROTO_IPV4, "nat", "POSTROUTING", "nat", true},
		{userChainMsg, unix.NFPROTO_IPV4, "nat", "DOCKER", "", false},
	} {
		fam, table, name, typ, base, err := parseNftChain(c.m)
		if err != nil || fam != c.fam || table != c.table || name != c.name || typ != c.typ || base != c.base {
			t.Errorf("parseNftChain = %d %q %q %q %v %v, want %d %q %q %q %v", fam, table, name, typ, base, err,
				c.fam, c.table, c.name, c.typ, c.base)
		}
	}
	for _, c := range []struct {
		m            []byte
		fam          uint8
		table, chain string
		uses         bool
	}{
		{ctRuleMsg, unix.NFPROTO_INET, "fw", "input", true},
		{compatRuleMsg, unix.NFPROTO_IPV4, "filter", "FORWARD", true},
		{plainRuleMsg, unix.NFPROTO_IPV6, "filter", "INPUT", false},
	} {
		fam, table, chain, uses, err := parseNftRule(c.m)
		if err != nil || fam != c.fam || table != c.table || chain != c.chain || uses != c.uses {
			t.Errorf("parseNftRule = %d %q %q %v %v, want %d %q %q %v", fam, table, chain, uses, err, c.fam, c.table, c.chain, c.uses)
		}
	}
	if !familyCovers(IPv6, unix.NFPROTO_INET) || familyCovers(IPv4, unix.NFPROTO_IPV6) || !familyCovers(IPv4, unix.NFPROTO_IPV4) {
		t.Error("familyCovers: inet covers both, ip6 only IPv6, ip only IPv4")
	}
	if _, _, _, _, err := parseNftRule(ctRuleMsg[:len(ctRuleMsg)-3]); err == nil {
		t.Error("a truncated rule message parsed without error")
	}
}

// FuzzParseNftMessages: no message, however malformed, panics the parsers
// (they read the kernel's dumps, bounds checked by walkAttrs).
func FuzzParseNftMessages(f *testing.F) {
	for _, m := range [][]byte{natChainMsg, userChainMsg, ctRuleMsg, compatRuleMsg, plainRuleMsg, nil, {2, 0}} {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, m []byte) {
		if fam, _, _, _, _, err := parseNftChain(m); err == nil && fam != m[0] {
			t.Fatalf("chain family %d, message says %d", fam, m[0])
		}
		if fam, _, _, _, err := parseNftRule(m); err == nil && fam != m[0] {
			t.Fatalf("rule family %d, message says %d", fam, m[0])
		}
	})
}
