package kernel

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// TestRootContainerNetnsRefusesBadInput: every spec that is not a
// container's network namespace is refused with a clear message, fast,
// without opening (and blocking on) FIFOs or devices.
func TestRootContainerNetnsRefusesBadInput(t *testing.T) {
	kerneltest.RequireRoot(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(dir, "null")
	if err := syscall.Mknod(dev, syscall.S_IFCHR|0o600, 1<<8|3); err != nil { // 1:3 = /dev/null
		t.Fatal(err)
	}
	loop := filepath.Join(dir, "loop")
	if err := os.Symlink(loop+"2", loop); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(loop, loop+"2"); err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	// PID 1's namespace is the host's; a sandbox may hide it from us, and
	// then it is refused as unreadable.
	pid1 := "network namespace: refusing"
	if _, err := os.Stat("/proc/1/ns/net"); err != nil {
		pid1 = "permission denied"
	}
	cases := []struct{ spec, want string }{
		{fifo, "is a FIFO"},
		{dev, "is a device"},
		{"/dev/null", "is a device"},
		{loop, "symlink loop"},
		{dir, "is a directory"},
		{"/proc/1/ns/net", pid1},
		{"1", pid1},
		{self, "agent's own network namespace"},
		{"/proc/self/ns/net", "agent's own network namespace"},
		{"/proc/self/ns/uts", "not a network namespace"},
	}
	for _, c := range cases {
		start := time.Now()
		ns, err := ContainerNetns(c.spec)
		d := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %+v, %v; want an error containing %q", c.spec, ns, err, c.want)
		}
		if d > time.Second {
			t.Errorf("%s: answered after %v (want < 1 s)", c.spec, d)
		}
	}
}

// TestRootContainerNetnsIdentity: a namespace of our own is accepted by
// name, path and the PID of a process in it, and all three give the same
// identity, which differs from the host's.
func TestRootContainerNetnsIdentity(t *testing.T) {
	kerneltest.RequireRoot(t)
	name := kerneltest.Netns(t, prefix)
	byName, err := ContainerNetns(name)
	if err != nil {
		t.Fatal(err)
	}
	byPath, err := ContainerNetns(kerneltest.NetnsPath(name))
	if err != nil {
		t.Fatal(err)
	}
	if byName != byPath || byName.Path != kerneltest.NetnsPath(name) {
		t.Fatalf("by name %+v, by path %+v", byName, byPath)
	}
	cmd := exec.Command("ip", "netns", "exec", name, "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := strconv.Itoa(cmd.Process.Pid)
	kerneltest.Eventually(t, 5*time.Second, "sleep enters the namespace", func() bool {
		ns, err := ContainerNetns(pid)
		return err == nil && ns.ID == byName.ID
	})
	host, err := StatNetns("/proc/self/ns/net")
	if err != nil || host.ID == byName.ID || !strings.HasPrefix(byName.ID.String(), "netns:") {
		t.Fatalf("host %+v %v, ours %v", host, err, byName.ID)
	}
}
