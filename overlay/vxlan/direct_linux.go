package vxlan

import (
	"fmt"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// RemoveDirect deletes the direct routes (protocol 95) on the underlay
// link, for `flatmesh leave --purge`: they outlive the VXLAN link and the
// bridge that Remove deletes. Idempotent; "" does nothing.
func RemoveDirect(ns *kernel.NS, underlay string) error {
	if underlay == "" {
		return nil
	}
	if _, err := kernel.Reconcile(ns, kernel.State{}, kernel.Scope{RouteLinks: []string{underlay}}); err != nil {
		return fmt.Errorf("vxlan: removing direct routes: %w", err)
	}
	return nil
}
