package main

import "golang.org/x/sys/unix"

// closeInheritedOnExec marks every descriptor above stderr close-on-exec.
// The bench runs under `flock /work/wt/bench.lock` (or any wrapper that
// leaves a descriptor open); Go's os/exec hands such inherited descriptors
// to every child, so a lab agent left up by --keep kept the lock's open
// file, and the machine-wide lock, until it died. The runtime's own
// descriptors are close-on-exec already.
func closeInheritedOnExec() error {
	return unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
}
