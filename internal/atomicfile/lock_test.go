package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestLockDirNamesHolder: a second lock of a state dir is refused with
// ErrLocked and the PID of the holder; after Unlock it is free again.
func TestLockDirNamesHolder(t *testing.T) {
	dir := t.TempDir()
	first, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDir(dir)
	want := fmt.Sprintf("held by pid %d", os.Getpid())
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), want) {
		t.Fatalf("second lock: %v, want ErrLocked naming %q", err, want)
	}
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	again, err := LockDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	_ = again.Unlock()
}
