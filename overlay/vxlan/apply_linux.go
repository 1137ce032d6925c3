package vxlan

import (
	"fmt"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// Result is what one Apply changed.
type Result struct {
	Links []string    // link-level changes (created, recreated, mtu, up, offload), human readable
	Plan  kernel.Plan // addresses, neighbours, FDB entries and routes added, replaced, deleted
}

// Empty reports whether Apply found the kernel as desired and changed
// nothing.
func (r Result) Empty() bool { return len(r.Links) == 0 && r.Plan.Empty() }

// Apply puts st into the namespace ns in dependency order: the bridge, the
// VXLAN link (adopted when compatible, recreated when not) and its tx
// checksum offload setting, then one kernel.Reconcile of bridge addresses,
// neighbours, FDB entries and routes. It touches only objects of st.Scope().
// Idempotent: a second Apply of the same state changes nothing and returns
// an empty Result. Callers serialise Apply per namespace.
func Apply(ns *kernel.NS, st State) (Result, error) {
	var res Result
	_, changes, err := kernel.EnsureBridge(ns, st.Bridge.Spec)
	res.Links = append(res.Links, changes...)
	if err != nil {
		return res, fmt.Errorf("vxlan: %w", err)
	}
	_, changes, err = kernel.EnsureVXLAN(ns, st.Device)
	res.Links = append(res.Links, changes...)
	if err != nil {
		return res, fmt.Errorf("vxlan: %w", err)
	}
	on, err := ns.TxChecksum(st.Device.Name)
	if err != nil {
		return res, fmt.Errorf("vxlan: %w", err)
	}
	if on != st.TxChecksumOffload {
		if err := ns.SetTxChecksum(st.Device.Name, st.TxChecksumOffload); err != nil {
			return res, fmt.Errorf("vxlan: %w", err)
		}
		res.Links = append(res.Links, fmt.Sprintf("tx checksum offload %t on %s", st.TxChecksumOffload, st.Device.Name))
	}
	res.Plan, err = kernel.Reconcile(ns, st.Objects, st.Scope())
	if err != nil {
		return res, fmt.Errorf("vxlan: %w", err)
	}
	return res, nil
}

// Remove deletes the VXLAN link and the bridge (with every neighbour, FDB
// entry, route and address on them), for `flatmesh leave --purge`. Detach
// containers first. Idempotent.
func Remove(ns *kernel.NS, device, bridge string) error {
	if err := kernel.DeleteLink(ns, device); err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	if err := kernel.DeleteLink(ns, bridge); err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	return nil
}
