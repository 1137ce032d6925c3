package wireguard

import (
	"errors"
	"fmt"
	"io"
)

// Backends: which implementation carries the device.
const (
	BackendKernel    = "kernel"    // the kernel's WireGuard module
	BackendUserspace = "userspace" // wireguard-go embedded in the agent
)

// ErrNoKernel is what LinkCreator.CreateKernel wraps when the kernel has no
// WireGuard support (EOPNOTSUPP from RTM_NEWLINK of kind "wireguard").
var ErrNoKernel = errors.New("the kernel has no wireguard support")

// LinkCreator is what OpenDevice needs from the system. The Linux one
// speaks netlink and starts wireguard-go; tests use a fake. Its methods
// are called from one goroutine.
type LinkCreator interface {
	// Existing returns the kind of an existing link of that name ("wireguard",
	// "tun", ...) or "" when there is none.
	Existing(name string) (kind string, err error)
	// CreateKernel creates a kernel WireGuard link; errors.Is(err,
	// ErrNoKernel) when the kernel cannot.
	CreateKernel(name string) error
	// StartUserspace creates (or re-attaches to) a TUN of that name and runs
	// a userspace WireGuard device on it, with its UAPI socket, until the
	// returned Closer is closed.
	StartUserspace(name string, mtu int) (io.Closer, error)
	// Delete removes the link.
	Delete(name string) error
}

// Handle is an open device: its backend, and for a userspace device what
// stops it (nil for the kernel's).
type Handle struct {
	Backend string
	Created bool // the link did not exist before
	Closer  io.Closer
}

// Close stops a userspace device (the link stays); a kernel one has nothing
// to stop.
func (h Handle) Close() error {
	if h.Closer == nil {
		return nil
	}
	return h.Closer.Close()
}

// OpenDevice adopts or creates the WireGuard device name. An existing
// kernel WireGuard link is adopted as is (its peers keep working while
// the agent is down); an existing TUN (a userspace device left by an agent
// that died) is re-attached to by a new userspace device. Without a link,
// a kernel one is created when the kernel can, else a userspace one. A link
// of that name of another kind is deleted first (it cannot be ours to keep).
func OpenDevice(lc LinkCreator, name string, mtu int) (Handle, error) {
	kind, err := lc.Existing(name)
	if err != nil {
		return Handle{}, fmt.Errorf("wireguard: looking for link %s: %w", name, err)
	}
	switch kind {
	case "wireguard":
		return Handle{Backend: BackendKernel}, nil
	case "tun":
		c, err := lc.StartUserspace(name, mtu)
		if err != nil {
			return Handle{}, fmt.Errorf("wireguard: re-attaching to %s: %w", name, err)
		}
		return Handle{Backend: BackendUserspace, Closer: c}, nil
	case "":
	default:
		if err := lc.Delete(name); err != nil {
			return Handle{}, fmt.Errorf("wireguard: deleting link %s of kind %q: %w", name, kind, err)
		}
	}
	err = lc.CreateKernel(name)
	if err == nil {
		return Handle{Backend: BackendKernel, Created: true}, nil
	}
	if !errors.Is(err, ErrNoKernel) {
		return Handle{}, fmt.Errorf("wireguard: creating kernel device %s: %w", name, err)
	}
	c, err := lc.StartUserspace(name, mtu)
	if err != nil {
		return Handle{}, fmt.Errorf("wireguard: no kernel wireguard, and the userspace device failed: %w", err)
	}
	return Handle{Backend: BackendUserspace, Created: true, Closer: c}, nil
}
