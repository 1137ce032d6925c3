package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
			return nil, fmt.Errorf("%s: %w (is an agent running with this state dir?)", path, ErrLocked)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return &DirLock{f: f}, nil
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
