package e2e

import (
	"context"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// lifecycle: fixed addresses across restarts, stop/start, connect and
// disconnect, rm -f releasing the address, --ip refusals. web1 runs on h1,
// web2 (at a2) on h2.
func (dl *dockerLab) lifecycle(t *testing.T, a2 netip.Addr) {
	fixed := netip.MustParseAddr("10.213.0.50") // in h1's first block
	t.Run("fixed --ip survives restart and stop/start", func(t *testing.T) {
		if got := dl.run(t, "h1", "fix1", "--ip", fixed.String()); got != fixed {
			t.Fatalf("fix1 got %s, asked %s", got, fixed)
		}
		dl.ping(t, "h2", "web2", fixed)
		dl.docker(t, "h1", "restart", "-t", "0", "fix1")
		if got := dl.addr(t, "h1", "fix1"); got != fixed {
			t.Fatalf("after restart fix1 has %s", got)
		}
		dl.ping(t, "h2", "web2", fixed)
		dl.docker(t, "h1", "stop", "-t", "0", "fix1")
		for _, c := range containersOf(t, dl.Lab, "h1") {
			if strings.HasPrefix(c.IP, fixed.String()+"/") {
				t.Fatalf("a stopped container is still attached: %+v", c)
			}
		}
		dl.docker(t, "h1", "start", "fix1")
		if got := dl.addr(t, "h1", "fix1"); got != fixed {
			t.Fatalf("after stop/start fix1 has %s", got)
		}
		dl.ping(t, "h1", "fix1", a2)
	})
	t.Run("--ip refused with its holder named", func(t *testing.T) {
		h1 := mustHost(t, dl.Lab, "h1")
		before := countFM(hostLinks(t, h1.Netns))
		out, err := dl.dockerErr("h1", "run", "-d", "--name", "dup", "--network", "fm", "--ip", fixed.String(), "busybox", "sleep", "1000")
		if err == nil || !strings.Contains(out, "held by Docker container fix1") {
			t.Fatalf("a held --ip: err %v, output:\n%s", err, out)
		}
		if after := countFM(hostLinks(t, h1.Netns)); after != before {
			t.Fatalf("a refused run left interfaces: %d before, %d after", before, after)
		}
		dl.docker(t, "h1", "rm", "-f", "dup")
		out, err = dl.dockerErr("h2", "run", "-d", "--name", "dup2", "--network", "fm", "--ip", "10.213.0.51", "busybox", "sleep", "1000")
		if err == nil || !strings.Contains(out, "h1") {
			t.Fatalf("an --ip in another host's block: err %v, output:\n%s", err, out)
		}
		dl.docker(t, "h2", "rm", "-f", "dup2")
		out, err = dl.dockerErr("h1", "run", "-d", "--name", "dup3", "--network", "fm", "--ip", "10.99.0.7", "busybox", "sleep", "1000")
		if err == nil || !strings.Contains(out, "does not belong to any of this network's subnets") {
			t.Fatalf("an --ip outside the space (Docker's own check): err %v, output:\n%s", err, out)
		}
		dl.docker(t, "h1", "rm", "-f", "dup3")
	})
	t.Run("disconnect and connect", func(t *testing.T) {
		dl.docker(t, "h1", "network", "disconnect", "fm", "fix1")
		if out, err := dl.dockerErr("h2", "exec", "web2", "ping", "-c", "1", "-W", "1", fixed.String()); err == nil {
			t.Fatalf("fix1 still answers after disconnect:\n%s", out)
		}
		dl.docker(t, "h1", "network", "connect", "--ip", fixed.String(), "fm", "fix1")
		dl.ping(t, "h2", "web2", fixed)
	})
	t.Run("rm -f releases the address", func(t *testing.T) {
		dl.docker(t, "h1", "rm", "-f", "fix1")
		kerneltest.Eventually(t, 5*time.Second, "fix1's address released", func() bool {
			for _, c := range containersOf(t, dl.Lab, "h1") {
				if strings.HasPrefix(c.IP, fixed.String()+"/") {
					return false
				}
			}
			return true
		})
		if got := dl.run(t, "h1", "fix2", "--ip", fixed.String()); got != fixed {
			t.Fatalf("the released address was not given again: %s", got)
		}
		dl.ping(t, "h2", "web2", fixed)
	})
}

// faults: the agent killed while containers stream, the agent down during
// docker run, dockerd restarted.
func (dl *dockerLab) faults(t *testing.T, a1, a2 netip.Addr) {
	t.Run("agent SIGKILL while containers stream", func(t *testing.T) {
		done := make(chan string, 1)
		go func() {
			out, _ := dl.dockerErr("h2", "exec", "web2", "ping", "-c", "40", "-i", "0.1", "-W", "1", a1.String())
			done <- out
		}()
		time.Sleep(time.Second)
		if err := dl.StopAgent("h1", syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if err := dl.StartAgent("h1"); err != nil {
			t.Fatal(err)
		}
		out := <-done
		m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("ping output:\n%s", out)
		}
		sent, _ := strconv.Atoi(m[1])
		got, _ := strconv.Atoi(m[2])
		t.Logf("web2 -> web1 while h1's agent was killed and restarted: %d/%d answered", got, sent)
		if sent-got > 3 {
			t.Fatalf("the flow lost %d of %d packets while the agent was down", sent-got, sent)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dl.WaitReady(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		// The restarted agent adopted web1 and serves Docker again.
		kerneltest.Eventually(t, 10*time.Second, "web1 listed after the restart", func() bool {
			for _, c := range containersOf(t, dl.Lab, "h1") {
				if c.Name == "web1" {
					return true
				}
			}
			return false
		})
		a := dl.run(t, "h1", "after1")
		dl.ping(t, "h2", "web2", a)
	})
	t.Run("agent down during docker run", func(t *testing.T) {
		h1 := mustHost(t, dl.Lab, "h1")
		if err := dl.StopAgent("h1", syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		before := countFM(hostLinks(t, h1.Netns))
		out, err := dl.dockerErr("h1", "run", "-d", "--name", "nope", "--network", "fm", "busybox", "sleep", "1000")
		t.Logf("docker run with the agent down: %v\n%s", err, out)
		if err == nil || !strings.Contains(out, "flatmesh") {
			t.Fatalf("docker run succeeded or did not name the plugin: %v\n%s", err, out)
		}
		if after := countFM(hostLinks(t, h1.Netns)); after != before {
			t.Fatalf("the failed run left interfaces: %d before, %d after", before, after)
		}
		dl.docker(t, "h1", "rm", "-f", "nope")
		if err := dl.StartAgent("h1"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dl.WaitReady(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		dl.ping(t, "h2", "web2", a1)
	})
	t.Run("dockerd restart finds its network", func(t *testing.T) {
		if err := dl.StopDockerd("h1"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := dl.StartDockerd(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		if out := dl.docker(t, "h1", "network", "ls", "--filter", "driver=flatmesh", "--format", "{{.Name}}"); out != "fm" {
			t.Fatalf("networks after the restart: %q", out)
		}
		dl.docker(t, "h1", "start", "web1")
		a := dl.addr(t, "h1", "web1")
		dl.ping(t, "h1", "web1", a2)
		dl.ping(t, "h2", "web2", a)
	})
	t.Run("network rm", func(t *testing.T) {
		dl.docker(t, "h2", "rm", "-f", "web2")
		dl.docker(t, "h2", "network", "rm", "fm")
		if out := dl.docker(t, "h2", "network", "ls", "--filter", "driver=flatmesh", "-q"); out != "" {
			t.Fatalf("networks left: %q", out)
		}
	})
}
