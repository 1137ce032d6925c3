package dns

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// freebind lets a listener bind an address the host does not hold yet (a
// gateway the reconcile pass is adding to the bridge).
func freebind(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
