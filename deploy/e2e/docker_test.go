package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// dockerLab is a lab with one real dockerd per host, each finding its own
// host's agent as plugin "flatmesh", the busybox image imported, and a
// flatmesh network "fm" created on every host with createArgs.
type dockerLab struct {
	*lab.Lab
	d map[string]lab.Dockerd
}

func upDockerLab(t *testing.T, o lab.Options, createArgs ...string) *dockerLab {
	t.Helper()
	kerneltest.RequireRoot(t)
	for _, p := range []string{lab.DockerCLI, "/usr/sbin/dockerd", "/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s is missing (install docker.io and busybox-static): %v", p, err)
		}
	}
	o.ContainersPerHost = lab.NoContainers
	l := upLab(t, o)
	dl := &dockerLab{Lab: l, d: map[string]lab.Dockerd{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(l.Hosts()))
	for _, h := range l.Hosts() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := l.StartDockerd(ctx, h.Name)
			if err == nil {
				err = d.ImportBusybox(ctx)
			}
			if err == nil {
				// What dockerd does on a host where it turned forwarding on
				// itself (here the agent was first): flatmesh must not care.
				_, err = kerneltest.NsOutput(h.Netns, "iptables", "-w", "-P", "FORWARD", "DROP")
			}
			if err == nil {
				_, err = d.Docker(ctx, append(append([]string{"network", "create", "-d", "flatmesh", "--ipam-driver", "flatmesh"}, createArgs...), "fm")...)
			}
			mu.Lock()
			dl.d[h.Name] = d
			mu.Unlock()
			errs <- err
		}()
	}
	wg.Wait()
	t.Cleanup(func() { // before the lab's Down (which would also do it)
		for h, d := range dl.d {
			if t.Failed() {
				b, _ := os.ReadFile(d.LogFile)
				lines := strings.Split(string(b), "\n")
				t.Logf("dockerd %s log tail:\n%s", h, strings.Join(lines[max(0, len(lines)-25):], "\n"))
			}
			if err := l.StopDockerd(h); err != nil {
				t.Errorf("stopping dockerd %s: %v", h, err)
			}
		}
	})
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return dl
}

// docker runs the docker CLI on host and fails the test on error.
func (dl *dockerLab) docker(t *testing.T, host string, args ...string) string {
	t.Helper()
	out, err := dl.dockerErr(host, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func (dl *dockerLab) dockerErr(host string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := dl.d[host].Docker(ctx, args...)
	return string(out), err
}

// run starts a busybox container on host in network fm and returns its address.
func (dl *dockerLab) run(t *testing.T, host, name string, extra ...string) netip.Addr {
	t.Helper()
	args := append([]string{"run", "-d", "--stop-timeout", "1", "--name", name, "--network", "fm"}, extra...)
	dl.docker(t, host, append(args, lab.BusyboxImage, "sleep", "100000")...)
	return dl.addr(t, host, name)
}

func (dl *dockerLab) addr(t *testing.T, host, name string) netip.Addr {
	t.Helper()
	out := dl.docker(t, host, "inspect", "-f", "{{with index .NetworkSettings.Networks \"fm\"}}{{.IPAddress}}{{end}}", name)
	a, err := netip.ParseAddr(out)
	if err != nil {
		t.Fatalf("container %s on %s has no address in fm: %q", name, host, out)
	}
	return a
}

// ping from inside a container.
func (dl *dockerLab) ping(t *testing.T, host, name string, to netip.Addr) {
	t.Helper()
	if out, err := dl.dockerErr(host, "exec", name, "ping", "-c", "1", "-W", "3", to.String()); err != nil {
		var diag strings.Builder
		for _, h := range dl.Hosts() {
			fmt.Fprintf(&diag, "--- %s:\n%s%s%s", h.Name, kerneltest.Run(t, "ip", "-n", h.Netns, "route"),
				kerneltest.Run(t, "ip", "-n", h.Netns, "neigh"), kerneltest.Run(t, "ip", "-n", h.Netns, "-br", "link"))
		}
		if os.Getenv("HOLD") != "" {
			t.Logf("HOLD %s", dl.WorkDir())
			time.Sleep(90 * time.Second)
		}
		neigh, _ := dl.dockerErr(host, "exec", name, "ip", "neigh")
		t.Fatalf("%s on %s cannot ping %s: %v\n%s\nits neighbours:\n%s\n%s", name, host, to, err, out, neigh, diag.String())
	}
}

// hostPing pings from a lab namespace.
func hostPing(t *testing.T, netns string, to netip.Addr) {
	t.Helper()
	if out, err := kerneltest.NsOutput(netns, "ping", "-c", "1", "-W", "3", to.String()); err != nil {
		t.Fatalf("%s cannot ping %s: %v\n%s", netns, to, err, out)
	}
}

func hostLinks(t *testing.T, netns string) string {
	return kerneltest.Run(t, "ip", "-n", netns, "-o", "link", "show")
}

func countFM(links string) int {
	n := 0
	for _, line := range strings.Split(links, "\n") {
		if f := strings.Fields(line); len(f) > 1 && (strings.HasPrefix(f[1], "fm") || strings.HasPrefix(f[1], "fp")) && !strings.HasPrefix(f[1], "fmbr") {
			n++
		}
	}
	return n
}

func mustHost(t *testing.T, l *lab.Lab, name string) lab.Host {
	h, err := l.Host(name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

var _ = syscall.SIGKILL
