package rig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/hashicorp/go-hclog"
)

// DownDir tears down the rig recorded in workDir (make rig-down, or a stale
// rig before Boot). ErrNoRig when there is none.
func DownDir(ctx context.Context, workDir string, progress io.Writer) error {
	s, err := loadState(workDir)
	if err != nil {
		return err
	}
	if progress == nil {
		progress = io.Discard
	}
	return down(ctx, s, nil, progress)
}

// down stops the machines in parallel, then unmounts their roots, deletes
// the namespaces (killing anything left in them) and the work dir.
func down(ctx context.Context, s *state, exited map[string]chan struct{}, progress io.Writer) error {
	if s == nil {
		return nil
	}
	fmt.Fprintf(progress, "rig %s: tearing down\n", s.Name)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, m := range s.Machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := stopNspawn(m.Nspawn, exited[m.Name], 10*time.Second); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	log := hclog.NewNullLogger()
	for i := len(s.Namespaces) - 1; i >= 0; i-- {
		if err := lab.DeleteNetns(ctx, log, s.Namespaces[i]); err != nil {
			errs = append(errs, err)
		}
	}
	// The namespaces' processes are gone now, so nothing holds the roots.
	time.Sleep(100 * time.Millisecond)
	for _, m := range s.Machines {
		if err := unmountRoot(m); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.RemoveAll(s.WorkDir); err != nil {
		return fmt.Errorf("removing %s: %w", s.WorkDir, err)
	}
	return nil
}
