package kernel

import (
	"fmt"
	"net"
)

// MAC is an Ethernet (EUI-48) address as a comparable value, so it can sit in
// the plain-data State and be used as a map key.
type MAC [6]byte

// MACFrom converts a net.HardwareAddr; it fails unless the address has 6 bytes.
func MACFrom(hw net.HardwareAddr) (MAC, error) {
	var m MAC
	if len(hw) != len(m) {
		return m, fmt.Errorf("hardware address %q is not a 6-byte Ethernet address", hw.String())
	}
	copy(m[:], hw)
	return m, nil
}

// ParseMAC parses "aa:bb:cc:dd:ee:ff".
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return MAC{}, fmt.Errorf("parsing mac %q: %w", s, err)
	}
	return MACFrom(hw)
}

// HardwareAddr returns a fresh net.HardwareAddr copy.
func (m MAC) HardwareAddr() net.HardwareAddr { return net.HardwareAddr(append([]byte(nil), m[:]...)) }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// String formats m as aa:bb:cc:dd:ee:ff.
func (m MAC) String() string { return m.HardwareAddr().String() }
