package agent

import (
	"net/netip"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// bridgeAddrs reads the addresses of bridge that keep says are ours to
// serve DNS on. A missing bridge has none.
func bridgeAddrs(bridge string, keep func(netip.Prefix) bool) ([]netip.Addr, error) {
	ns, err := kernel.OpenNS("")
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	st, err := kernel.Observe(ns, kernel.Scope{AddrLinks: []string{bridge}})
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ad := range st.Addrs {
		if keep(ad.Prefix) {
			out = append(out, ad.Prefix.Addr())
		}
	}
	return out, nil
}
