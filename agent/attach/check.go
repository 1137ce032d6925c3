package attach

import (
	"fmt"
	"net"
)

// DriftKind names one way an attachment differs from its Spec. The values
// are the drift kinds of the agent's API (api.Drift*).
type DriftKind string

// What Check can find.
const (
	DriftInterfaceMissing DriftKind = "interface_missing" // a veth end, or the container's namespace, is gone
	DriftInterfaceWrong   DriftKind = "interface_wrong"   // off the bridge, down, wrong MTU, not the pair
	DriftAddressWrong     DriftKind = "address_wrong"     // the address is missing, or another one is there
	DriftRouteMissing     DriftKind = "route_missing"     // the default route is missing or points elsewhere
)

// Drift is one difference Check found, with a sentence a person can act on.
type Drift struct {
	Kind   DriftKind
	Detail string
}

// Report is what Check saw. The MACs and MTU are zero when the interface
// they belong to is missing.
type Report struct {
	HostIf  string
	HostMAC net.HardwareAddr
	MAC     net.HardwareAddr // container end
	MTU     int              // container end
	Drift   []Drift
}

// OK is true when Check found no drift.
func (r *Report) OK() bool { return len(r.Drift) == 0 }

func (r *Report) add(kind DriftKind, format string, args ...any) {
	r.Drift = append(r.Drift, Drift{Kind: kind, Detail: fmt.Sprintf(format, args...)})
}
