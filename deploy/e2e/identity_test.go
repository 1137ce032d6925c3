package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// TestRootReinstalledHost: a host that comes back under its name without
// its state dir (a new signing key) is refused by the members, which pinned
// its old key, and it says why in its own log; `flatmesh rmpeer` on one
// member forgets the key everywhere, and the host then joins.
func TestRootReinstalledHost(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 3, ContainersPerHost: lab.NoContainers})
	names := hostNames(l)
	h1, err := l.Host("h1")
	if err != nil {
		t.Fatal(err)
	}
	h3, err := l.Host("h3")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(h3.StateDir, "identity.key")
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("h3's identity key: %v %v", st, err)
	}
	if err := l.StopAgent("h3", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitState(t, l, names[:2], "h3", "failed", 30*time.Second)

	// "Reinstall": a fresh state dir, so a new identity key.
	if err := os.RemoveAll(h3.StateDir); err != nil {
		t.Fatal(err)
	}
	join := h1.Underlay.Addr().String()
	if err := l.StartAgent("h3", "--join", join); err != nil {
		t.Fatal(err)
	}
	kerneltest.Eventually(t, 30*time.Second, "h3 to log that it is refused", func() bool {
		return strings.Contains(l.LogTail("h3", 200), "flatmesh rmpeer h3")
	})
	if !strings.Contains(l.LogTail("h1", 200), "pinned") {
		t.Errorf("h1's log does not say why it refuses h3:\n%s", l.LogTail("h1", 30))
	}
	for _, o := range names[:2] {
		if st := peerStates(t, l, o)["h3"]; st == "alive" {
			t.Fatalf("%s accepted h3 with another key", o)
		}
	}

	if out, err := cli(l, "h1", "rmpeer", "h3"); err != nil {
		t.Fatalf("rmpeer h3: %s", out)
	}
	if err := l.StopAgent("h3", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := l.StartAgent("h3", "--join", join); err != nil {
		t.Fatal(err)
	}
	d := waitState(t, l, names, "h3", "alive", 60*time.Second)
	t.Logf("FIGURE: reinstalled h3 alive everywhere %s after rmpeer and a restart", d.Round(time.Millisecond))
}
