package kernel

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ValidateIfName checks a Linux interface name the way the kernel does
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or space.
func ValidateIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("interface name is empty")
	case len(name) > MaxIfNameLen:
		return fmt.Errorf("interface name %q is %d bytes long; Linux allows at most %d", name, len(name), MaxIfNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f || r > 0x7e {
			return fmt.Errorf("interface name %q contains %q; use letters, digits, '-', '_' or '.'", name, r)
		}
	}
	return nil
}

// BridgeSpec is a Linux bridge flatmesh owns. STP is always off and the
// forward delay 0: ports forward at once, and no BPDUs leave the host.
type BridgeSpec struct {
	Name string
	MTU  int              // 0 keeps whatever the kernel has
	MAC  net.HardwareAddr // nil leaves the address to the kernel; set it to pin one
}

// Validate checks the spec.
func (s BridgeSpec) Validate() error {
	if err := ValidateIfName(s.Name); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if s.MTU < 0 || s.MTU > 65535 {
		return fmt.Errorf("bridge %s: mtu %d out of range", s.Name, s.MTU)
	}
	if s.MAC != nil {
		if _, err := MACFrom(s.MAC); err != nil {
			return fmt.Errorf("bridge %s: %w", s.Name, err)
		}
	}
	return nil
}

// VXLANSpec is a VXLAN link in point-to-point style: no multicast group, no
// default remote, every destination given by static FDB entries.
type VXLANSpec struct {
	Name        string
	VNI         int              // 1 to 2^24-1
	Port        int              // UDP destination (and listen) port
	Local       netip.Addr       // underlay source address of encapsulated packets
	ParentIndex int              // underlay link index to bind to; 0 = none
	MTU         int              // 0 keeps whatever the kernel has
	MAC         net.HardwareAddr // nil leaves the address to the kernel
	Learning    bool             // source-address learning; flatmesh keeps it off
}

// Validate checks the spec.
func (s VXLANSpec) Validate() error {
	if err := ValidateIfName(s.Name); err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	switch {
	case s.VNI < 1 || s.VNI > 1<<24-1:
		return fmt.Errorf("vxlan %s: vni %d out of range 1-16777215", s.Name, s.VNI)
	case s.Port < 1 || s.Port > 65535:
		return fmt.Errorf("vxlan %s: port %d out of range 1-65535", s.Name, s.Port)
	case s.Local.IsValid() && (s.Local.IsUnspecified() || s.Local.IsMulticast()):
		return fmt.Errorf("vxlan %s: local address %s is not a unicast address", s.Name, s.Local)
	case s.MTU < 0 || s.MTU > 65535:
		return fmt.Errorf("vxlan %s: mtu %d out of range", s.Name, s.MTU)
	}
	if s.MAC != nil {
		if _, err := MACFrom(s.MAC); err != nil {
			return fmt.Errorf("vxlan %s: %w", s.Name, err)
		}
	}
	return nil
}

// vxlanIncompatible returns why an existing VXLAN link (have) cannot serve
// as want and must be recreated, or "" when it can be fixed in place (MTU,
// MAC and up state are fixed in place).
func vxlanIncompatible(want, have VXLANSpec) string {
	var why []string
	if want.VNI != have.VNI {
		why = append(why, fmt.Sprintf("vni %d, want %d", have.VNI, want.VNI))
	}
	if want.Port != have.Port {
		why = append(why, fmt.Sprintf("port %d, want %d", have.Port, want.Port))
	}
	if want.Local.Unmap() != have.Local.Unmap() {
		why = append(why, fmt.Sprintf("local %s, want %s", have.Local, want.Local))
	}
	if want.ParentIndex != have.ParentIndex {
		why = append(why, fmt.Sprintf("underlay link index %d, want %d", have.ParentIndex, want.ParentIndex))
	}
	if want.Learning != have.Learning {
		why = append(why, fmt.Sprintf("learning %t, want %t", have.Learning, want.Learning))
	}
	return strings.Join(why, ", ")
}
