package flat

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/internal/kerneltest"
	"github.com/hashicorp/go-hclog"
)

// lab is a LAN in namespaces: a switch (a bridge in its own namespace), a
// plain machine that is also the router (10.77.0.1, 2001:db8:77::1), and a
// host whose NIC eth0 (a veth) has static addresses and routes:
//
//	10.77.0.10/24 (primary, prefix route metric 50), 10.77.0.11/24 label eth0:1
//	2001:db8:77::10/64
//	default via 10.77.0.1 metric 20 proto static
//	default via 2001:db8:77::1 metric 1024
//	10.99.0.0/16 via 10.77.0.1 table 100 metric 7 mtu 1400
type lab struct {
	sw, plain, host string // namespace names
	hostNS          string // path of the host namespace
	stateDir        string
}

const (
	labHostIP   = "10.77.0.10"
	labHostIP6  = "2001:db8:77::10"
	labRouterIP = "10.77.0.1"
)

func newLab(t *testing.T) *lab {
	t.Helper()
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "ip", "ping")
	l := &lab{
		sw:       kerneltest.Netns(t, "fmfs"),
		plain:    kerneltest.Netns(t, "fmfp"),
		host:     kerneltest.Netns(t, "fmfh"),
		stateDir: t.TempDir(),
	}
	l.hostNS = kerneltest.NetnsPath(l.host)
	run := func(ns string, args ...string) { kerneltest.Run(t, "ip", append([]string{"-n", ns}, args...)...) }
	run(l.sw, "link", "add", "sw0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
	run(l.sw, "link", "set", "sw0", "up")
	kerneltest.Veth(t, l.plain, "lan0", l.sw, "p-port")
	kerneltest.Veth(t, l.host, "eth0", l.sw, "h-port")
	run(l.sw, "link", "set", "p-port", "master", "sw0")
	run(l.sw, "link", "set", "h-port", "master", "sw0")
	run(l.plain, "addr", "add", "10.77.0.1/24", "dev", "lan0")
	run(l.plain, "addr", "add", "2001:db8:77::1/64", "dev", "lan0", "nodad")
	run(l.host, "addr", "add", "10.77.0.10/24", "dev", "eth0", "metric", "50")
	run(l.host, "addr", "add", "10.77.0.11/24", "dev", "eth0", "label", "eth0:1")
	run(l.host, "addr", "add", "2001:db8:77::10/64", "dev", "eth0")
	run(l.host, "route", "add", "default", "via", labRouterIP, "dev", "eth0", "metric", "20", "proto", "static")
	run(l.host, "-6", "route", "add", "default", "via", "2001:db8:77::1", "dev", "eth0", "metric", "1024")
	run(l.host, "route", "add", "10.99.0.0/16", "via", labRouterIP, "dev", "eth0", "table", "100", "metric", "7", "mtu", "1400")
	l.settled(t) // wait for DAD
	return l
}

func (l *lab) options(t *testing.T) Options {
	return Options{
		Iface:         "eth0",
		Bridge:        "fmfbr0",
		Range:         netip.MustParsePrefix("10.77.0.64/26"),
		StateDir:      l.stateDir,
		NetnsPath:     l.hostNS,
		VerifyTimeout: 2 * time.Second,
		Logger:        testLogger(t),
	}
}

// settled returns the host's snapshot once no address is tentative.
func (l *lab) settled(t *testing.T) Snapshot {
	t.Helper()
	var s Snapshot
	kerneltest.Eventually(t, 5*time.Second, "duplicate address detection to finish", func() bool {
		var err error
		if s, err = TakeSnapshot(l.hostNS, "eth0", "fmfbr0"); err != nil {
			t.Fatal(err)
		}
		addrs := s.Addrs
		if s.Bridge != nil {
			addrs = append(addrs, s.Bridge.Addrs...)
		}
		for _, a := range addrs {
			if a.Flags&addrFlagTentative != 0 {
				return false
			}
		}
		return true
	})
	return s
}

// requireSame fails unless the host is back to want (waiting a little for
// the kernel to finish DAD and its local routes).
func (l *lab) requireSame(t *testing.T, want Snapshot, what string) {
	t.Helper()
	var d []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		d = Diff(want, l.settled(t))
		if len(d) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(d) > 0 {
		t.Fatalf("%s: host differs from the snapshot taken before:\n%s", what, strings.Join(d, "\n"))
	}
}

// pingsOK checks both directions host <-> plain machine.
func (l *lab) pingsOK(t *testing.T) {
	t.Helper()
	kerneltest.NsRun(t, l.plain, "ping", "-c", "1", "-W", "2", labHostIP)
	kerneltest.NsRun(t, l.host, "ping", "-c", "1", "-W", "2", labRouterIP)
	kerneltest.NsRun(t, l.host, "ping", "-6", "-c", "1", "-W", "2", "2001:db8:77::1")
}

// pinger runs `ping -i 0.05` from the plain machine to the host.
type pinger struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

func startPing(t *testing.T, ns, dst string, count int) *pinger {
	t.Helper()
	p := &pinger{done: make(chan error, 1)}
	family := "-4"
	if netip.MustParseAddr(dst).Is6() {
		family = "-6"
	}
	p.cmd = exec.Command("ip", "netns", "exec", ns, "ping", family, "-n", "-i", "0.05", "-c", strconv.Itoa(count), "-W", "1", dst)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
		}
	})
	go func() { p.done <- p.cmd.Wait() }()
	return p
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// wait returns how many requests were sent and how many got no reply.
func (p *pinger) wait(t *testing.T) (sent, lost int) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("ping did not finish")
	}
	m := pingSummary.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no ping summary in:\n%s", p.out.String())
	}
	sent, _ = strconv.Atoi(m[1])
	recv, _ := strconv.Atoi(m[2])
	return sent, sent - recv
}

// testLogger sends hclog output to t.Log.
func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "flat", Level: hclog.Debug, Output: tWriter{t}})
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func mustContain(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

func neigh(t *testing.T, ns, ip string) string {
	out, _ := kerneltest.Output("ip", "-n", ns, "neigh", "show", ip)
	return fmt.Sprint(strings.TrimSpace(out))
}
