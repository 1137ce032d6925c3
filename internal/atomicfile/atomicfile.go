// Package atomicfile is the one home of "write a file so that a crash
// leaves either the old content or the new, never a torn file": every
// state file of flatmesh (members, keyring, IPAM, the flat-mode record, the
// lab description) is written through it.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Options tune Write.
type Options struct {
	Mode      os.FileMode // permissions of the new file; 0 means 0600
	NoReplace bool        // fail if path exists instead of replacing it
	NoSync    bool        // skip the fsyncs (for files that can be rebuilt)
}

// Write writes data to path through a temporary file in the same directory,
// fsyncs it, renames it into place (or links it, with NoReplace, so an
// existing file is never clobbered), and fsyncs the directory. Safe for
// concurrent use on different paths; callers serialise writes to one path.
func Write(path string, data []byte, o Options) (err error) {
	if o.Mode == 0 {
		o.Mode = 0o600
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("creating a temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a rename there is nothing left to remove
	if err = f.Chmod(o.Mode); err == nil {
		if _, err = f.Write(data); err == nil && !o.NoSync {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if o.NoReplace {
		err = os.Link(tmp, path) // EEXIST instead of clobbering
	} else {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists: refusing to overwrite it", path)
		}
		return fmt.Errorf("moving %s into place: %w", path, err)
	}
	if o.NoSync {
		return nil
	}
	return SyncDir(dir)
}

// SyncDir fsyncs the directory dir, so that a rename or removal in it
// survives a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
