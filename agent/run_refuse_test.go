package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/flatmesh/flatmesh/internal/atomicfile"
	"github.com/hashicorp/go-hclog"
)

// TestRunRefusesALockedStateDir: a second agent on a state dir is refused
// before it reads or writes any state.
func TestRunRefusesALockedStateDir(t *testing.T) {
	c, err := load(t, loadCase{args: []string{"--insecure", "--advertise", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	held, err := atomicfile.LockDir(c.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	a, err := New(Options{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("Run on a locked state dir = %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.StateDir, "ipam.json")); !os.IsNotExist(err) {
		t.Fatalf("ipam.json was written next to a running agent: %v", err)
	}
}

// TestReloadRacesNothing runs SIGHUP's Reload while handler-like readers
// copy the configuration; -race finds a write to cfg.
func TestReloadRacesNothing(t *testing.T) {
	c, err := load(t, loadCase{args: []string{"--insecure", "--advertise", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: c, log: hclog.NewNullLogger()}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			next := c
			next.LogLevel = []string{"debug", "info"}[i%2]
			a.Reload(next)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			_ = a.cfg.Fingerprint() // copies cfg, as handleStatus does
		}
	}()
	wg.Wait()
	if a.logLevel != "info" {
		t.Fatalf("level after reloads = %q", a.logLevel)
	}
}
