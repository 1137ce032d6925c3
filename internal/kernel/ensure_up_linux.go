package kernel

import "fmt"

// EnsureLinkUp fixes an existing link of any kind in place: the MTU when
// mtu > 0 and it differs, and the up state. It returns what it changed.
// For links created elsewhere (a WireGuard device or a TUN); Idempotent.
func EnsureLinkUp(ns *NS, name string, mtu int) ([]string, error) {
	link, err := ns.H.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", name, err)
	}
	_, changes, err := finishLink(ns, link, mtu, nil, nil)
	return changes, err
}
