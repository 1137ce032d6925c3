package firewall

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// nftEventFDs lists this process's open netfilter netlink sockets in
// namespace ns (what WatchChanges opens there) by file descriptor.
func nftEventFDs(t *testing.T, ns string) []string {
	t.Helper()
	fdOf := map[string]string{} // socket inode -> fd
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(l, "socket:[") {
			fdOf[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = e.Name()
		}
	}
	var fds []string
	for _, line := range strings.Split(kerneltest.NsRun(t, ns, "cat", "/proc/net/netlink"), "\n")[1:] {
		f := strings.Fields(line)
		// sk Eth(protocol) Pid Groups Rmem Wmem Dump Locks Drops Inode; 12 = NETLINK_NETFILTER
		if len(f) >= 10 && f[1] == "12" && fdOf[f[9]] != "" {
			fds = append(fds, fdOf[f[9]])
		}
	}
	return fds
}

// threadsReading lists the threads of this process blocked in recvfrom on
// fd (from /proc/self/task/*/syscall; amd64 numbering).
func threadsReading(t *testing.T, fd string) []string {
	t.Helper()
	var fdNum int
	fmt.Sscan(fd, &fdNum)
	want := fmt.Sprintf("45 %#x ", fdNum) // recvfrom(fd, ...)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/syscall")
		if err == nil && strings.HasPrefix(string(b), want) {
			out = append(out, task.Name())
		}
	}
	return out
}

// TestWatchChangesWaitsInThePollerAndStops: the watch reports a ruleset
// change made in its namespace; while idle no thread sits in a read of its
// socket (it waits in Go's network poller, without the wakeups of a read
// timeout); ending ctx closes the socket at once.
func TestWatchChangesWaitsInThePollerAndStops(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "iptables")
	ns := kerneltest.Netns(t, "fmwatch")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	changes := make(chan struct{}, 64)
	if err := WatchChanges(ctx, kerneltest.NetnsPath(ns), func() { changes <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	fds := nftEventFDs(t, ns)
	if len(fds) != 1 {
		t.Fatalf("nftables event sockets in the namespace while watching: fds %v, want one", fds)
	}
	time.Sleep(700 * time.Millisecond) // longer than a 500 ms read timeout
	if runtime.GOARCH == "amd64" {
		if th := threadsReading(t, fds[0]); len(th) != 0 {
			t.Fatalf("threads %v are blocked reading the watch socket (fd %s): it should wait in the poller", th, fds[0])
		}
	}
	select {
	case <-changes:
		t.Fatal("a change reported before any ruleset change")
	default:
	}
	kerneltest.NsRun(t, ns, "iptables", "-w", "5", "-N", "FMWATCHTEST")
	waitChange(t, changes, "creating a chain")
	cancel()
	kerneltest.Eventually(t, 2*time.Second, "the watch socket closed after ctx ended", func() bool {
		return len(nftEventFDs(t, ns)) == 0
	})
}
