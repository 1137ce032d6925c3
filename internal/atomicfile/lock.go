package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LockFile is the name of the lock inside a state directory.
const LockFile = "lock"

// ErrLocked is returned (wrapped) by LockDir when another process holds the lock.
var ErrLocked = errors.New("the state directory is locked by another process")

// DirLock is an exclusive advisory lock (flock) on a state directory: one
// agent, or one offline tool, per directory. The kernel drops it when the
// process dies, so a crash never leaves a stale lock.
type DirLock struct{ f *os.File }

// LockDir takes the lock of dir without waiting; it fails with ErrLocked
// when another process holds it.
func LockDir(dir string) (*DirLock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (%s: is an agent running with this state dir?)", path, ErrLocked, holder(path))
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// The holder's PID, for the message of the next one that tries.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f}, nil
}

// holder names the process that wrote its PID into the lock file.
func holder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "held by an unknown process"
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return "held by an unknown process"
	}
	return "held by pid " + strconv.Itoa(pid)
}

// Unlock releases the lock. Safe to call on a nil lock.
func (l *DirLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}
