//go:build unix

package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// stateLockFile is the file in the state dir an agent holds an exclusive
// flock on for as long as it runs: one agent per state dir.
const stateLockFile = "agent.lock"

// stateLock is a held lock on a state dir; Release once.
type stateLock struct{ f *os.File }

// lockStateDir takes the state dir's lock without waiting and writes our
// PID into the lock file. A dir locked by another agent is refused with
// that agent's PID. The kernel drops the lock when the process dies, so a
// crash leaves nothing to clean up.
func lockStateDir(dir string) (*stateLock, error) {
	path := filepath.Join(dir, stateLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the state dir lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "unknown pid"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					holder = "pid " + strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("state dir %s is in use by another flatmesh agent (%s holds %s): stop it first, or give this agent its own --state-dir", dir, holder, path)
		}
		return nil, fmt.Errorf("locking the state dir %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("writing our pid into %s: %w", path, err)
		}
	}
	return &stateLock{f: f}, nil
}

// Release drops the lock.
func (l *stateLock) Release() {
	if l != nil && l.f != nil {
		l.f.Close()
	}
}
