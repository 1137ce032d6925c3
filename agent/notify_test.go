package agent

import (
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/cluster"
)

// notifySocket listens where systemd would (NOTIFY_SOCKET) and returns a
// function reading the next datagram.
func notifySocket(t *testing.T) func() string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := conn.Read(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
}

// The real library against a real socket: the datagrams systemd would get.
func TestNotifierSpeaksTheProtocol(t *testing.T) {
	next := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", "")
	var n notifier
	if err := n.setStatus("setting up the vxlan data plane"); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "STATUS=setting up the vxlan data plane" {
		t.Fatalf("status: got %q", got)
	}
	if n.watchdog != 30*time.Second {
		t.Fatalf("watchdog interval %v, want 30s from WATCHDOG_USEC", n.watchdog)
	}
	// A failing pass pings the watchdog but is not ready yet.
	if err := n.passed("reconcile failing", false); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "WATCHDOG=1\nSTATUS=reconcile failing" {
		t.Fatalf("failing pass: got %q", got)
	}
	// The first good pass says READY once; every pass pings the watchdog.
	for i := 0; i < 2; i++ {
		if err := n.passed("in sync", true); err != nil {
			t.Fatal(err)
		}
	}
	if got := next(); got != "READY=1\nWATCHDOG=1\nSTATUS=in sync" {
		t.Fatalf("first good pass: got %q", got)
	}
	if got := next(); got != "WATCHDOG=1\nSTATUS=in sync" {
		t.Fatalf("second pass: got %q", got)
	}
	if err := n.stopping("leaving"); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "STOPPING=1\nSTATUS=leaving" {
		t.Fatalf("stopping: got %q", got)
	}
}

func TestNotifierWithoutWatchdogSendsOnlyChanges(t *testing.T) {
	next := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "")
	var n notifier
	_ = n.passed("a", false)
	_ = n.passed("a", false)
	_ = n.passed("b", false)
	if got := next(); got != "STATUS=a" {
		t.Fatalf("got %q", got)
	}
	if got := next(); got != "STATUS=b" {
		t.Fatalf("an unchanged status without a watchdog must not be sent; got %q", got)
	}
	if got := next(); got != "" {
		t.Fatalf("unexpected datagram %q", got)
	}
}

func TestNotifierOutsideSystemdIsSilent(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	var n notifier
	if err := n.passed("up", true); err != nil {
		t.Fatalf("no NOTIFY_SOCKET must not be an error: %v", err)
	}
}

func TestSystemdPassStatusLine(t *testing.T) {
	peers := []cluster.Peer{
		{Name: "a", Addr: netip.MustParseAddr("10.0.0.1"), State: cluster.StateAlive},
		{Name: "b", Addr: netip.MustParseAddr("10.0.0.2"), State: cluster.StateAlive},
		{Name: "c", Addr: netip.MustParseAddr("10.0.0.3"), State: "suspect"},
	}
	if got := passStatus("vxlan", peers, nil); got != "vxlan mode, 2 of 3 members alive, data plane in sync" {
		t.Fatalf("got %q", got)
	}
	got := passStatus("flat", peers[:1], errors.New("adding route: file exists\nmore detail"))
	if !strings.HasSuffix(got, "reconcile failing (retrying): adding route: file exists") || !strings.HasPrefix(got, "flat mode, 1 of 1") {
		t.Fatalf("got %q", got)
	}
}
