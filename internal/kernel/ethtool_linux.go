package kernel

// The tx-checksum switch is two legacy SIOCETHTOOL ioctls (ETHTOOL_GTXCSUM,
// ETHTOOL_STXCSUM), kept here rather than taken from a library:
// safchain/ethtool sets features by their string-set names through
// ETHTOOL_SFEATURES (more moving parts for the same bit), and
// mdlayher/ethtool (v0.7.0, checked) has no calls for features at all
// (link info, modes, FEC, WoL and private flags only). Either would still
// need InNetns, as this does.

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifreqData is struct ifreq with its union holding a pointer.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// TxChecksum reports whether transmit checksum offload is on for ifname
// (ETHTOOL_GTXCSUM; `ethtool -k IF` shows it as tx-checksumming).
func (n *NS) TxChecksum(ifname string) (bool, error) {
	v := ethtoolValue{cmd: unix.ETHTOOL_GTXCSUM}
	if err := n.ethtool(ifname, &v); err != nil {
		return false, fmt.Errorf("reading tx checksum offload of %s: %w", ifname, err)
	}
	return v.data != 0, nil
}

// SetTxChecksum turns transmit checksum offload of ifname on or off, like
// `ethtool -K IF tx on|off` (ETHTOOL_STXCSUM). Turning it off also turns
// off the segmentation offloads that depend on it. Idempotent.
func (n *NS) SetTxChecksum(ifname string, on bool) error {
	v := ethtoolValue{cmd: unix.ETHTOOL_STXCSUM}
	if on {
		v.data = 1
	}
	if err := n.ethtool(ifname, &v); err != nil {
		return fmt.Errorf("setting tx checksum offload of %s to %t: %w", ifname, on, err)
	}
	return nil
}

// ethtool runs one SIOCETHTOOL ioctl on a socket inside the namespace.
func (n *NS) ethtool(ifname string, v *ethtoolValue) error {
	if err := ValidateIfName(ifname); err != nil {
		return err
	}
	return n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening ioctl socket: %w", err)
		}
		defer unix.Close(fd)
		var ifr ifreqData
		copy(ifr.name[:], ifname)
		ifr.data = unsafe.Pointer(v)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
		if errno != 0 {
			return errno
		}
		return nil
	})
}
