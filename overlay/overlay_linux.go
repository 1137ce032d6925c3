package overlay

import (
	"fmt"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// ApplyBridge ensures the bridge link and reconciles its addresses (only
// those; routes and neighbours belong to the mode). It returns the link
// changes and the address plan it carried out. Idempotent; a second call
// with nothing changed changes nothing. Modes that reconcile more objects
// in one pass (vxlan.Apply) merge Bridge.Addrs into their own state instead.
func ApplyBridge(ns *kernel.NS, b Bridge) ([]string, kernel.Plan, error) {
	_, changes, err := kernel.EnsureBridge(ns, b.Spec)
	if err != nil {
		return changes, kernel.Plan{}, err
	}
	plan, err := kernel.Reconcile(ns, kernel.State{Addrs: b.Addrs}, b.Scope())
	if err != nil {
		return changes, plan, fmt.Errorf("bridge %s addresses: %w", b.Spec.Name, err)
	}
	return changes, plan, nil
}

// RemoveBridge deletes the bridge (its addresses go with it). Ports still
// on it are left in place, unattached: detach containers first. Idempotent.
func RemoveBridge(ns *kernel.NS, name string) error { return kernel.DeleteLink(ns, name) }
