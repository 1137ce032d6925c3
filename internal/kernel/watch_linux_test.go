package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// TestRootWatchSessionLeavesNoGoroutines: a session that ends while the
// netlink subscriptions have more events queued than their channels hold
// must not leave netlink's sender goroutines blocked forever (one leak per
// resubscribe before the fix).
func TestRootWatchSessionLeavesNoGoroutines(t *testing.T) {
	kerneltest.RequireRoot(t)
	name := kerneltest.Netns(t, prefix)
	kerneltest.Run(t, "ip", "-n", name, "link", "add", "fmkwbr", "type", "bridge")
	kerneltest.Run(t, "ip", "-n", name, "link", "set", "fmkwbr", "up")
	var batch strings.Builder
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&batch, "route add 10.77.%d.%d/32 dev fmkwbr\n", i/250, i%250+1)
	}
	script := filepath.Join(t.TempDir(), "routes")
	if err := os.WriteFile(script, []byte(batch.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	for round := 0; round < 3; round++ {
		wake := make(chan struct{}, 1)
		w := &watcher{opts: WatchOptions{Netns: kerneltest.NetnsPath(name), Links: []string{"fmkwbr"}, Wake: wake}, idx: map[int]string{}}
		w.opts = withWatchDefaults(w.opts)
		ctx, cancel := context.WithCancel(context.Background())
		ended := make(chan error, 1)
		go func() { ended <- w.session(ctx) }()
		select {
		case <-wake: // subscribed
		case <-time.After(5 * time.Second):
			t.Fatal("no subscription")
		}
		// Hold the watcher's lock: the session stalls on its first event,
		// as a slow loop would, while 300 route events queue up.
		w.mu.Lock()
		kerneltest.Run(t, "ip", "-n", name, "-batch", script)
		kerneltest.Run(t, "ip", "-n", name, "route", "flush", "dev", "fmkwbr")
		time.Sleep(100 * time.Millisecond)
		cancel()
		w.mu.Unlock()
		if err := <-ended; err != nil && !errors.Is(err, errSubscriptionEnded) { // an overflowing socket may end it first
			t.Fatalf("session: %v", err)
		}
	}
	kerneltest.Eventually(t, 5*time.Second, "netlink goroutines of ended sessions exit", func() bool {
		return runtime.NumGoroutine() <= base
	})
}
