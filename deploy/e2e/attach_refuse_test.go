package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// TestRootAttachRefusesBadNamespaces: `flatmesh attach` of the host's
// namespace (by path, name, the agent's PID, PID 1) or of something that is
// not a namespace file (FIFO, device, symlink loop, directory) is refused
// within a second with a clear message; no interface appears in the host's
// namespace; and the agent is not stuck: a real container attaches right
// after.
func TestRootAttachRefusesBadNamespaces(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 1})
	h, err := l.Host("h1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	loop := filepath.Join(dir, "loop")
	if err := os.Symlink(loop, loop); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ spec, want string }{
		{kerneltest.NetnsPath(h.Netns), "agent's own network namespace"},
		{h.Netns, "agent's own network namespace"},
		{strconv.Itoa(h.PID), "agent's own network namespace"},
		{"/proc/1/ns/net", "refusing"},
		{fifo, "is a FIFO"},
		{"/dev/null", "is a device"},
		{loop, "symlink loop"},
		{dir, "is a directory"},
	}
	for _, c := range cases {
		start := time.Now()
		out, err := l.CLI("h1", "attach", c.spec, "--ifname", "fmbad0")
		d := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("attach %s: %v (%s); want a refusal containing %q", c.spec, err, out, c.want)
		}
		if d > time.Second {
			t.Errorf("attach %s answered after %v (want < 1 s)", c.spec, d)
		}
	}
	for _, ns := range []string{h.Netns, ""} {
		var out string
		if ns == "" {
			out, _ = kerneltest.Output("ip", "-o", "link", "show")
		} else {
			out, _ = kerneltest.NsOutput(ns, "ip", "-o", "link", "show")
		}
		if strings.Contains(out, "fmbad0") {
			t.Errorf("an interface fmbad0 was created in namespace %q:\n%s", ns, out)
		}
	}
	ctr := kerneltest.Netns(t, "ctr")
	if out, err := l.CLI("h1", "attach", ctr); err != nil {
		t.Fatalf("a real container after the refusals: %v %s", err, out)
	}
	// The same namespace by other specs (its path, the PID of a process in
	// it) is the same container: no second address.
	if out, err := l.CLI("h1", "attach", kerneltest.NetnsPath(ctr)); err != nil {
		t.Fatalf("attach by path: %v %s", err, out)
	}
	sleep := exec.Command("ip", "netns", "exec", ctr, "sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
	pid := strconv.Itoa(sleep.Process.Pid)
	want, err := kernel.StatNetns(ctr)
	if err != nil {
		t.Fatal(err)
	}
	// Attach by PID only once the process is inside (`ip netns exec` starts
	// in the test's own namespace).
	kerneltest.Eventually(t, 5*time.Second, "sleep enters the namespace", func() bool {
		got, err := kernel.StatNetns(pid)
		return err == nil && got.ID == want.ID
	})
	if out, err := l.CLI("h1", "attach", pid); err != nil {
		t.Fatalf("attach by pid: %v %s", err, out)
	}
	out, err := l.CLI("h1", "containers", "--json")
	var list []struct{ Name, IP string }
	if err == nil {
		err = json.Unmarshal(out, &list)
	}
	n := 0
	for _, c := range list {
		if c.Name == ctr {
			n++
		}
	}
	if err != nil || n != 1 {
		t.Fatalf("containers after attaching one namespace three ways: %v (%d entries named %s)\n%s", err, n, ctr, out)
	}
}
