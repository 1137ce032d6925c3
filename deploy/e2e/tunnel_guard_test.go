package e2e

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// tunnelPortDrops returns the iptables listing of the chain that keeps
// non-members off the tunnel port on host namespace ns, and how many
// packets its DROP rule for the port counted. With masquerade on (the
// default) that is raw FLATMESH-NOTRACK (before conntrack); without a
// conntrack user filter FLATMESH-INPUT. Exactly one of them holds the DROP.
func tunnelPortDrops(t *testing.T, ns string, port int) (listing string, drops int) {
	t.Helper()
	drop := regexp.MustCompile(`(?m)^\s*(\d+)\s+\d+\s+DROP\s.*dpt:` + strconv.Itoa(port) + `\b`)
	found := 0
	for _, c := range []struct{ table, chain string }{{"raw", "FLATMESH-NOTRACK"}, {"filter", "FLATMESH-INPUT"}} {
		out, err := kerneltest.NsOutput(ns, "iptables", "-t", c.table, "-n", "-v", "-x", "-L", c.chain)
		if err != nil {
			continue // chain absent
		}
		for _, m := range drop.FindAllStringSubmatch(out, -1) {
			n, _ := strconv.Atoi(m[1])
			drops += n
			found++
			listing += c.table + " " + out
		}
	}
	if found != 1 {
		t.Fatalf("want exactly one DROP rule for UDP port %d in raw FLATMESH-NOTRACK or filter FLATMESH-INPUT, found %d:\n%s",
			port, found, listing)
	}
	return listing, drops
}
