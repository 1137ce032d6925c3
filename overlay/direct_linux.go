package overlay

import (
	"fmt"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// RemoveDirect deletes the direct routes (protocol 95) on the underlay
// link, for `flatmesh leave --purge`: they outlive the tunnel link and the
// bridge. Idempotent; "" does nothing.
func RemoveDirect(ns *kernel.NS, underlay string) error {
	if underlay == "" {
		return nil
	}
	if _, err := kernel.Reconcile(ns, kernel.State{}, kernel.Scope{RouteLinks: []string{underlay}}); err != nil {
		return fmt.Errorf("removing direct routes: %w", err)
	}
	return nil
}
