package kernel

import (
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// FindNetnsPath looks for a file that holds the namespace id: first the
// names under NetnsDir, then /proc/PID/ns/net of every process. It only
// stats (never opens) what it finds, so it cannot block on a FIFO; a file
// that is not on nsfs never matches. ok is false when no such file exists
// (the namespace is gone, or kept alive only by a file descriptor or a
// bind mount elsewhere).
func FindNetnsPath(id NetnsID) (string, bool) {
	if names, err := os.ReadDir(NetnsDir); err == nil {
		for _, e := range names {
			if p := filepath.Join(NetnsDir, e.Name()); HoldsNetns(p, id) {
				return p, true
			}
		}
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return "", false
	}
	for _, e := range procs {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if p := "/proc/" + e.Name() + "/ns/net"; HoldsNetns(p, id) {
			return p, true
		}
	}
	return "", false
}

// HoldsNetns reports whether path is an nsfs file holding the namespace id
// (stat only: it never opens path, so it cannot block).
func HoldsNetns(path string, id NetnsID) bool {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || (NetnsID{Dev: st.Dev, Ino: st.Ino}) != id {
		return false
	}
	return checkNsfs(path, &st) == nil
}
