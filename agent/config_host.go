package agent

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/flatmesh/flatmesh/cluster"
)

// HostCheck are the inputs of Config.CheckHost.
type HostCheck struct {
	// LocalAddrs lists the addresses of the host's links; nil means the
	// host's own (net.InterfaceAddrs).
	LocalAddrs func() ([]netip.Addr, error)
}

// CheckHost checks the settings that depend on this host, before the agent
// creates anything (no state dir, no IPAM seed, no kernel object): a bind
// address and, except in wireguard mode (where the advertised address may
// be a NAT's), the advertise address must be held by a local link; the key
// file must hold valid keys.
func (c Config) CheckHost(h HostCheck) error {
	if h.LocalAddrs == nil {
		h.LocalAddrs = hostAddrs
	}
	local, err := h.LocalAddrs()
	if err != nil {
		return fmt.Errorf("reading the host's addresses: %w", err)
	}
	held := func(a netip.Addr) bool {
		for _, l := range local {
			if l == a.Unmap() {
				return true
			}
		}
		return false
	}
	if b := c.Bind.Addr(); b.IsValid() && !b.IsUnspecified() && !held(b) {
		return fmt.Errorf("invalid bind %q: no local interface holds %s", c.Bind, b)
	}
	if adv := c.Advertise.Addr(); c.Mode != "wireguard" && !held(adv) {
		return fmt.Errorf("invalid advertise %q: no local interface holds %s (the %s data plane sends from it); give an address of this host, or --iface", c.Advertise, adv, c.Mode)
	}
	if c.KeyFile != "" {
		if _, err := cluster.ReadKeyFile(c.KeyFile); err != nil {
			return fmt.Errorf("invalid key_file %q: %w", c.KeyFile, err)
		}
	}
	return nil
}

func hostAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ad, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ad.Unmap())
			}
		}
	}
	return out, nil
}

// firewallStateFile is where the firewall records the sysctls it changed,
// so a purge puts them back.
func firewallStateFile(c Config) string { return filepath.Join(c.StateDir, "firewall.json") }
