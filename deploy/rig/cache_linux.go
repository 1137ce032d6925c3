package rig

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultCacheDir holds built rootfs trees, one directory per Rootfs.Key.
const DefaultCacheDir = "/var/cache/flatmesh-rig"

// EnsureRootfs returns the cached tree for r under cacheDir, building it with
// mmdebstrap first when it is missing. Concurrent callers wait on a lock; a
// half-built tree is never used (it is built beside and renamed into place).
// built says whether this call built it.
func EnsureRootfs(ctx context.Context, log hclog.Logger, cacheDir string, r Rootfs) (dir string, built bool, err error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", false, fmt.Errorf("creating rootfs cache: %w", err)
	}
	dir = filepath.Join(cacheDir, r.Key())
	if complete(dir) {
		return dir, false, nil
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("locking rootfs cache: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", false, fmt.Errorf("locking rootfs cache: %w", err)
	}
	if complete(dir) {
		return dir, false, nil
	}
	tmp := dir + ".building"
	if err := os.RemoveAll(tmp); err != nil {
		return "", false, fmt.Errorf("removing a half-built rootfs: %w", err)
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return "", false, fmt.Errorf("building the rig rootfs needs mmdebstrap (apt-get install mmdebstrap systemd-container): %w", err)
	}
	log.Info("building rootfs with mmdebstrap (downloads from the Debian mirror)", "dir", dir)
	bctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, "mmdebstrap", r.mmdebstrapArgs(tmp)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(tmp)
		return "", false, fmt.Errorf("mmdebstrap: %w: %s", err, lastLines(string(out), 20))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".flatmesh-rig-complete"), []byte(r.Key()+"\n"), 0o644); err != nil {
		return "", false, fmt.Errorf("marking rootfs complete: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", false, fmt.Errorf("moving the rootfs into the cache: %w", err)
	}
	return dir, true, nil
}

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ".flatmesh-rig-complete"))
	return err == nil
}
