package main

import (
	"context"
	"fmt"
	"strings"
)

// netfilterNote says what netfilter does to a path's traffic on host
// namespace ns: how many iptables rules it has, which of them are
// flatmesh's chains, and whether bridged frames traverse iptables
// (bridge-nf-call-iptables, per namespace), so the report shows whether
// two paths compared are alike in that respect.
func netfilterNote(ctx context.Context, label, ns string) string {
	out, err := nsExec(ctx, ns, "iptables-save")
	if err != nil {
		return fmt.Sprintf("%s: iptables-save failed: %v", label, err)
	}
	rules, chains := 0, []string{}
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "-A "):
			rules++
		case strings.HasPrefix(l, ":FLATMESH"):
			chains = append(chains, strings.Fields(l[1:])[0])
		}
	}
	own := "none"
	if len(chains) > 0 {
		own = strings.Join(chains, ", ")
	}
	brnf := "absent (br_netfilter not loaded)"
	if b, err := nsExec(ctx, ns, "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
		brnf = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s (%s): %d iptables rules, flatmesh chains: %s; bridge-nf-call-iptables %s", label, ns, rules, own, brnf)
}
