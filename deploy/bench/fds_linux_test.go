package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestCloseInheritedOnExec: a descriptor opened without O_CLOEXEC (as
// flock(1) leaves its lock file to the command) is close-on-exec after.
func TestCloseInheritedOnExec(t *testing.T) {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if f, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || f&unix.FD_CLOEXEC != 0 {
		t.Fatalf("before: flags %#x, %v: want no FD_CLOEXEC", f, err)
	}
	if err := closeInheritedOnExec(); err != nil {
		t.Fatal(err)
	}
	if f, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || f&unix.FD_CLOEXEC == 0 {
		t.Fatalf("after: flags %#x, %v: want FD_CLOEXEC", f, err)
	}
}
