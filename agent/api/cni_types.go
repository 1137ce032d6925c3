package api

import (
	"fmt"
	"regexp"
	"strings"
)

// The CNI endpoints (POST /v1/cni/add, /v1/cni/del, /v1/cni/check,
// /v1/cni/gc, GET /v1/cni/status) serve the flatmesh-cni plugin. They run
// the same attach and detach flow as POST /v1/attach; only the identity
// differs: a CNI attachment is named by the runtime's container ID and
// interface name (within one CNI network), never by its namespace path.

// CNIIDPrefix starts the allocation ID of every CNI attachment, so CNI
// garbage collection can tell its own attachments from those of `flatmesh
// attach` or Docker.
const CNIIDPrefix = "cni:"

// CNIContainerID is the identity under which the agent keeps a CNI
// attachment (its allocation ID and the ID in the host veth's alias):
// "cni:<network>:<containerID>". CNI network names and container IDs hold
// no ':' (the spec allows letters, digits, '_', '.', '-'), so it splits
// back uniquely.
func CNIContainerID(network, containerID string) string {
	return CNIIDPrefix + network + ":" + containerID
}

// ParseCNIContainerID splits an ID made by CNIContainerID; ok is false for
// any other ID (an attachment made by `flatmesh attach`, for instance).
func ParseCNIContainerID(id string) (network, containerID string, ok bool) {
	rest, found := strings.CutPrefix(id, CNIIDPrefix)
	if !found {
		return "", "", false
	}
	network, containerID, found = strings.Cut(rest, ":")
	if !found || network == "" || containerID == "" || strings.Contains(containerID, ":") {
		return "", "", false
	}
	return network, containerID, true
}

// cniNameRE is what a container name given by a runtime may look like
// (podman's and Kubernetes' names fit; a DNS label's alphabet plus '_'
// and '.').
var cniNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// CheckCNIName says whether name can be a CNI container's name.
func CheckCNIName(name string) error {
	if !cniNameRE.MatchString(name) {
		return fmt.Errorf("container name %q: use 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit", name)
	}
	return nil
}

// CNIRequest is the body of POST /v1/cni/add, /v1/cni/del and /v1/cni/check.
type CNIRequest struct {
	Network     string `json:"network"`         // the network configuration's "name"
	ContainerID string `json:"container_id"`    // CNI_CONTAINERID
	IfName      string `json:"ifname"`          // CNI_IFNAME
	Netns       string `json:"netns,omitempty"` // CNI_NETNS; required by add and check, unused by del
	Name        string `json:"name,omitempty"`  // container name for listings and DNS (add only)
}

// CNIAttachment answers POST /v1/cni/add: the attachment as `flatmesh
// attach` reports it (its fields inline, including any the attach answer
// gains later, such as cluster DNS servers) plus what a CNI result needs.
type CNIAttachment struct {
	Attachment
	HostMAC string `json:"host_mac"`
}

// Drift kinds a check reports; the plugin turns each into a CNI error code.
const (
	DriftNoAllocation     = "no_allocation"     // the agent holds no address for this container
	DriftInterfaceMissing = "interface_missing" // a veth end, or the container's namespace, is gone
	DriftInterfaceWrong   = "interface_wrong"   // off the bridge, down, wrong MTU, or not the pair
	DriftAddressWrong     = "address_wrong"     // the container's address is missing or another is there
	DriftRouteMissing     = "route_missing"     // the default route is missing or points elsewhere
)

// CNIDrift is one difference between an attachment and what it should be.
type CNIDrift struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

func (d CNIDrift) String() string { return fmt.Sprintf("%s: %s", d.Kind, d.Detail) }

// CNICheck answers POST /v1/cni/check. Drift is empty when the attachment
// is as ADD made it; Attachment is nil when the agent holds no address.
type CNICheck struct {
	Attachment *CNIAttachment `json:"attachment,omitempty"`
	Drift      []CNIDrift     `json:"drift"`
}

// CNIDel answers POST /v1/cni/del. Released is nil when there was nothing
// to remove (DEL is idempotent).
type CNIDel struct {
	Released *Attachment `json:"released,omitempty"`
}

// CNIAttachmentRef names one attachment the runtime still uses.
type CNIAttachmentRef struct {
	ContainerID string `json:"container_id"`
	IfName      string `json:"ifname"`
}

// CNIGCRequest is the body of POST /v1/cni/gc: every attachment of Network
// that is not in Valid is removed and its address released.
type CNIGCRequest struct {
	Network string             `json:"network"`
	Valid   []CNIAttachmentRef `json:"valid"`
}

// CNIGC answers POST /v1/cni/gc.
type CNIGC struct {
	Released []Attachment `json:"released"`
}

// CNIStatus answers GET /v1/cni/status. Ready is false when ADD cannot work
// (the mode attaches no containers); Degraded is true when the data plane's
// last reconcile failed (existing containers may have limited connectivity).
type CNIStatus struct {
	Ready    bool   `json:"ready"`
	Degraded bool   `json:"degraded"`
	Mode     string `json:"mode"`
	Reason   string `json:"reason,omitempty"`
}
