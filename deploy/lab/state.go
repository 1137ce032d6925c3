package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/flatmesh/flatmesh/internal/atomicfile"
)

const stateFile = "lab.json"

// saveDescription writes d to WorkDir/lab.json atomically (temp + rename), so
// a reader in another process never sees half a file.
func saveDescription(d *description) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding lab description: %w", err)
	}
	path := filepath.Join(d.WorkDir, stateFile)
	// NoSync: the description can be rebuilt; readers only need whole files.
	if err := atomicfile.Write(path, append(b, '\n'), atomicfile.Options{Mode: 0o644, NoSync: true}); err != nil {
		return fmt.Errorf("saving lab description: %w", err)
	}
	return nil
}

// ErrNoLab is returned (wrapped) by Load and LoadDir when no lab.json exists.
var ErrNoLab = errors.New("no lab here")

// loadDescription reads WorkDir/lab.json.
func loadDescription(workDir string) (*description, error) {
	path := filepath.Join(workDir, stateFile)
	var d description
	found, err := atomicfile.ReadVersioned(path, atomicfile.Versioned{Want: descriptionVersion}, &d)
	if err != nil {
		return nil, fmt.Errorf("reading lab description: %w", err)
	}
	if !found {
		return nil, fmt.Errorf("reading %s: %w", path, ErrNoLab)
	}
	if d.Name == "" || !nameRE.MatchString(d.Name) {
		return nil, fmt.Errorf("reading lab description %s: invalid lab name %q", path, d.Name)
	}
	if d.WorkDir != workDir {
		// The directory moved or was copied: trust where we found it.
		d.WorkDir = workDir
	}
	return &d, nil
}

// checkWorkDir makes sure dir can hold a new lab: it is created if missing,
// and an existing one must be empty (the lab removes it on Down, so it must
// not hold anything the lab did not make).
func checkWorkDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating work dir: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading work dir: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("work dir %s is not empty and holds no lab.json: pick an empty or missing directory", dir)
	}
	return nil
}

// removeWorkDir removes what the lab put in its work dir, then the directory
// itself if that left it empty.
func removeWorkDir(d *description) error {
	var errs []error
	for _, h := range d.Hosts {
		if h.Dir != "" && filepath.Dir(h.Dir) == d.WorkDir {
			errs = append(errs, os.RemoveAll(h.Dir))
		}
	}
	if d.KeyGenerated && d.KeyFile != "" {
		errs = append(errs, ignoreMissing(os.Remove(d.KeyFile)))
	}
	errs = append(errs, ignoreMissing(os.Remove(filepath.Join(d.WorkDir, stateFile))))
	if err := os.Remove(d.WorkDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		if ents, rerr := os.ReadDir(d.WorkDir); rerr != nil || len(ents) > 0 {
			errs = append(errs, fmt.Errorf("work dir %s not removed: it holds files the lab did not make", d.WorkDir))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing work dir: %w", err)
	}
	return nil
}

func ignoreMissing(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
