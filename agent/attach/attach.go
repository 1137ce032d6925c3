// Package attach puts containers on a host bridge: a veth pair whose host
// end sits on the bridge and whose other end, inside the container's
// network namespace, carries the container's address, MTU and default
// route. Every mode uses it (overlay bridge or flat LAN bridge).
//
// Identity lives in the kernel: the host end is named HostIfName(id,
// ifname) and its alias is "flatmesh:<containerID>:<ifname>", so List
// rebuilds the attachments after an agent restart without any state file.
package attach

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// DefaultIfName is the container-side interface name when none is given.
const DefaultIfName = "eth0"

// aliasPrefix starts the alias of every host end flatmesh creates.
const aliasPrefix = "flatmesh:"

// maxIDLen bounds container IDs so the alias fits IFALIASZ (256).
const maxIDLen = 200

// Spec describes one attachment.
type Spec struct {
	HostNetns     string       // namespace holding the bridge; "" = the agent's own
	Netns         string       // container namespace: path, name under /run/netns, or PID
	IfName        string       // container-side name; default DefaultIfName
	ContainerID   string       // identity of the container (with IfName); required
	Name          string       // human name, echoed in the Result
	Bridge        string       // bridge for the host end; required
	Address       netip.Prefix // container address with its prefix length (10.213.0.5/26)
	Gateway       netip.Addr   // default route; zero = none
	MTU           int          // both ends; 0 = the bridge's MTU
	GratuitousARP bool         // announce Address once attached (flat mode); IPv4 only
}

// Result describes a made attachment.
type Result struct {
	ContainerID string
	Name        string
	HostIf      string           // host end, on the bridge
	IfName      string           // container end
	MAC         net.HardwareAddr // container end
	MTU         int
	Netns       string // resolved namespace path
	Address     netip.Prefix
	Gateway     netip.Addr
}

// Attachment is an attachment found in the kernel by List.
type Attachment struct {
	ContainerID string
	IfName      string
	HostIf      string
	HostIndex   int
	HostMAC     net.HardwareAddr
	MTU         int
	Bridge      string // master of the host end; "" when it has none
	Up          bool
	PeerNetnsID int // the kernel's id of the container namespace as seen from the host one (-1 unknown)
}

// DetachSpec names an attachment to remove.
type DetachSpec struct {
	HostNetns   string
	ContainerID string
	IfName      string // default DefaultIfName
}

// HostIfName is the deterministic name of the host end: "fm" and 10 hex
// digits of SHA-256(containerID, ifname). Deterministic so a retried
// attach finds what an earlier one made.
func HostIfName(containerID, ifname string) string {
	sum := sha256.Sum256([]byte(containerID + "\x00" + ifname))
	return "fm" + hex.EncodeToString(sum[:5])
}

// Alias is the ifalias stored on the host end.
func Alias(containerID, ifname string) string {
	return aliasPrefix + containerID + ":" + ifname
}

// ParseAlias splits an alias made by Alias; ok is false for any other.
func ParseAlias(alias string) (containerID, ifname string, ok bool) {
	rest, found := strings.CutPrefix(alias, aliasPrefix)
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// ValidateContainerID checks an ID: 1 to 200 printable ASCII bytes, no spaces.
func ValidateContainerID(id string) error {
	if id == "" {
		return fmt.Errorf("container id is empty")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("container id is %d bytes long, at most %d", len(id), maxIDLen)
	}
	for _, r := range id {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("container id %q contains %q; use printable ASCII without spaces", id, r)
		}
	}
	return nil
}

// normalize fills defaults and checks everything that can be checked
// without the kernel.
func (s Spec) normalize() (Spec, error) {
	if err := checkIdentity(&s.IfName, s.ContainerID, s.Bridge, s.MTU); err != nil {
		return s, err
	}
	if s.Netns == "" {
		return s, fmt.Errorf("no network namespace given for container %s", s.ContainerID)
	}
	if err := checkAddress(s.Address, s.Gateway); err != nil {
		return s, err
	}
	s.Address = netip.PrefixFrom(s.Address.Addr().Unmap(), s.Address.Bits())
	s.Gateway = s.Gateway.Unmap()
	if s.GratuitousARP && !s.Address.Addr().Is4() {
		return s, fmt.Errorf("gratuitous arp needs an IPv4 address, got %s", s.Address)
	}
	return s, nil
}

// checkIdentity fills the default interface name and checks what every
// attachment needs: the identity, the bridge and the MTU.
func checkIdentity(ifname *string, containerID, bridge string, mtu int) error {
	if *ifname == "" {
		*ifname = DefaultIfName
	}
	if err := kernel.ValidateIfName(*ifname); err != nil {
		return fmt.Errorf("container interface: %w", err)
	}
	if err := ValidateContainerID(containerID); err != nil {
		return err
	}
	if bridge == "" {
		return fmt.Errorf("no bridge given")
	}
	if err := kernel.ValidateIfName(bridge); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if mtu != 0 && (mtu < 68 || mtu > 65535) {
		return fmt.Errorf("mtu %d out of range 68-65535", mtu)
	}
	return nil
}

func checkAddress(addr netip.Prefix, gw netip.Addr) error {
	a := addr.Addr()
	switch {
	case !addr.IsValid():
		return fmt.Errorf("no valid container address given (want ADDR/LEN such as 10.213.0.5/26)")
	case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.IsLinkLocalUnicast():
		return fmt.Errorf("address %s cannot be a container address", addr)
	case a.Is4() && addr.Bits() <= 30 && a == addr.Masked().Addr():
		return fmt.Errorf("address %s is the network address of %s", a, addr.Masked())
	case a.Is4() && addr.Bits() <= 30 && a == lastAddr(addr):
		return fmt.Errorf("address %s is the broadcast address of %s", a, addr.Masked())
	case gw.IsValid() && gw.Unmap().Is4() != a.Is4():
		return fmt.Errorf("gateway %s and address %s are of different families", gw, addr)
	case gw.IsValid() && gw.Unmap() == a:
		return fmt.Errorf("gateway %s is the container's own address", gw)
	}
	return nil
}

// lastAddr is the highest address of p's network.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// ErrIfNameTaken is wrapped by Attach when the container's namespace already
// has an interface of the requested name that is not this attachment's
// (another attachment's end, perhaps one still being deleted).
var ErrIfNameTaken = errors.New("interface name taken in the container")
