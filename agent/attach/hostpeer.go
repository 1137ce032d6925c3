package attach

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
)

// PeerSpec describes a veth pair whose host end sits on the bridge and
// whose other end stays in the host namespace for a container runtime to
// move into the container itself (Docker's network driver protocol: the
// driver names the interface, Docker moves, renames and addresses it).
type PeerSpec struct {
	HostNetns   string // namespace holding the bridge; "" = the agent's own
	ContainerID string // identity (with IfName), as in Spec; required
	IfName      string // identity part; default DefaultIfName
	Bridge      string // bridge for the host end; required
	MTU         int    // both ends; 0 = the bridge's MTU
}

// PeerResult describes a prepared pair.
type PeerResult struct {
	HostIf string           // host end, on the bridge, up
	PeerIf string           // other end, still in the host namespace, down
	MAC    net.HardwareAddr // of the other end
	MTU    int
}

// PeerIfName is the deterministic name of the end left for the runtime:
// "fp" and the same 10 hex digits as HostIfName.
func PeerIfName(containerID, ifname string) string {
	sum := sha256.Sum256([]byte(containerID + "\x00" + ifname))
	return "fp" + hex.EncodeToString(sum[:5])
}

func (s PeerSpec) normalize() (PeerSpec, error) {
	err := checkIdentity(&s.IfName, s.ContainerID, s.Bridge, s.MTU)
	return s, err
}
