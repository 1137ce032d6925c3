package rig_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/doctor"
	"github.com/flatmesh/flatmesh/deploy/rig"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// buildDeb packages a freshly built flatmesh with deploy/deb/build.sh.
func buildDeb(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "flatmesh"), "../../cmd/flatmesh")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command("../deb/build.sh", "0.0.0~rigtest", rig.ArchName(), dir, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("deb/build.sh: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// machineT wraps a rig machine with failing helpers.
type machineT struct {
	t    *testing.T
	r    *rig.Rig
	name string
}

func (m machineT) run(args ...string) string {
	m.t.Helper()
	out, err := m.r.Exec(context.Background(), m.name, args...)
	if err != nil {
		m.t.Fatalf("%v\n%s", err, out)
	}
	return string(out)
}

// try runs a command whose failure is an answer (systemctl is-active).
func (m machineT) try(args ...string) string {
	out, _ := m.r.Exec(context.Background(), m.name, args...)
	return strings.TrimSpace(string(out))
}

func (m machineT) show(prop string) string {
	return m.try("systemctl", "show", "flatmesh.service", "--value", "-p", prop)
}

func (m machineT) peers() map[string]api.Peer {
	out, err := m.r.Exec(context.Background(), m.name, "flatmesh", "peers", "--json")
	if err != nil {
		return nil
	}
	var ps []api.Peer
	if json.Unmarshal(out, &ps) != nil {
		return nil
	}
	byName := map[string]api.Peer{}
	for _, p := range ps {
		byName[p.Name] = p
	}
	return byName
}

// eventually polls cond until it returns "" or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, timeout, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (m machineT) waitPeer(peer, state string, timeout time.Duration) {
	m.t.Helper()
	eventually(m.t, timeout, fmt.Sprintf("%s sees %s %s", m.name, peer, state), func() string {
		ps := m.peers()
		if ps[peer].State != state {
			return fmt.Sprintf("peers %v", ps)
		}
		return ""
	})
}

// The rig end to end: the .deb installed in three systemd machines, the
// unit run by their systemd, and what an operator does to it.
func TestRootSystemdRig(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "systemd-nspawn", "mmdebstrap", "nsenter", "dpkg-deb", "go")
	testStart := time.Now()
	deb := buildDeb(t)
	ctx := context.Background()
	name := kerneltest.UniqueName("fr")
	r, err := rig.Boot(ctx, rig.Options{Name: name, Deb: deb, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Down(); err != nil {
			t.Errorf("rig down: %v", err)
		}
		for _, m := range r.Machines() {
			if _, err := os.Stat("/run/netns/" + m.Netns); err == nil {
				t.Errorf("namespace %s left behind", m.Netns)
			}
			if _, err := os.Stat(m.Root); err == nil {
				t.Errorf("machine root %s left behind", m.Root)
			}
		}
	})
	m1, m2, m3 := machineT{t, r, "m1"}, machineT{t, r, "m2"}, machineT{t, r, "m3"}
	all := []machineT{m1, m2, m3}

	// Installing the package starts nothing and enables nothing.
	if err := r.Upload("m1"); err != nil {
		t.Fatal(err)
	}
	m1.run("dpkg", "-i", "/tmp/flatmesh.deb")
	if st, en := m1.try("systemctl", "is-active", "flatmesh"), m1.try("systemctl", "is-enabled", "flatmesh"); st != "inactive" || en != "disabled" {
		t.Fatalf("after dpkg -i the agent is %q and %q; want inactive and disabled", st, en)
	}

	// provision.sh (Vagrant's script) in each machine; the later ones join m1.
	if err := r.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		for _, p := range []string{"m1", "m2", "m3"} {
			m.waitPeer(p, "alive", 30*time.Second)
		}
	}
	t.Logf("all see all %s after the test started", time.Since(testStart).Round(time.Millisecond))
	checkUnit(t, m1)
	checkDoctor(t, m1, m2)

	// Containers attached inside the machines ping across.
	ips := map[string]netip.Addr{}
	for i, m := range all {
		m.run("ip", "netns", "add", "c1")
		var a api.Attachment
		if err := json.Unmarshal([]byte(m.run("flatmesh", "attach", "c1", "--name", fmt.Sprintf("c%d", i+1), "--json")), &a); err != nil {
			t.Fatal(err)
		}
		ips[m.name] = netip.MustParsePrefix(a.IP).Addr()
	}
	// Routes to a block that just got its first container follow the
	// next passes on every host: wait for them.
	for _, pair := range [][2]machineT{{m1, m2}, {m1, m3}, {m2, m3}, {m3, m1}} {
		eventually(t, 15*time.Second, pair[0].name+" pings "+pair[1].name+"'s container", func() string {
			out, err := r.Exec(ctx, pair[0].name, "ip", "netns", "exec", "c1", "ping", "-c", "1", "-W", "1", ips[pair[1].name].String())
			if err != nil {
				return fmt.Sprintf("%v: %s", err, out)
			}
			return ""
		})
	}

	streamAcrossRestarts(t, r, m1, m2, ips)
	wdBefore := m1.show("WatchdogTimestampMonotonic")

	// SIGKILL of the main PID: systemd restarts the agent, which rejoins.
	pid := m2.show("MainPID")
	restarts := m2.show("NRestarts")
	m2.run("kill", "-KILL", pid)
	eventually(t, 20*time.Second, "m2's agent restarted after SIGKILL", func() string {
		if p, a := m2.show("MainPID"), m2.try("systemctl", "is-active", "flatmesh"); p == pid || p == "0" || a != "active" || m2.show("NRestarts") == restarts {
			return fmt.Sprintf("MainPID %s active %s NRestarts %s", p, a, m2.show("NRestarts"))
		}
		return ""
	})
	for _, p := range []string{"m1", "m3"} {
		m2.waitPeer(p, "alive", 30*time.Second)
	}
	m1.waitPeer("m2", "alive", 30*time.Second)

	watchdogRestartsAStuckAgent(t, m2)

	// systemctl reload sends SIGHUP; the agent says it reloaded.
	m1.run("systemctl", "reload", "flatmesh")
	eventually(t, 10*time.Second, "reload logged", func() string {
		if !strings.Contains(m1.try("journalctl", "-u", "flatmesh", "--no-pager", "-o", "cat"), "reloaded configuration") {
			return "no \"reloaded configuration\" in the journal"
		}
		return ""
	})
	// The journal holds the agent's logs.
	j := m1.run("journalctl", "-u", "flatmesh", "--no-pager", "-o", "cat")
	for _, want := range []string{"agent started", "member joined", "signal received: leaving the cluster"} {
		if !strings.Contains(j, want) {
			t.Errorf("journalctl -u flatmesh lacks %q", want)
		}
	}

	checkMetrics(t, r, m1)
	rebootKeepsAddresses(t, r, m1, m3)
	if wd := m1.show("WatchdogTimestampMonotonic"); wd == wdBefore || wd == "0" {
		t.Errorf("no watchdog ping from m1's reconcile loop: WatchdogTimestampMonotonic %s then %s", wdBefore, wd)
	}

	// Reinstalling (an upgrade to dpkg) restarts the running agent.
	pid = m2.show("MainPID")
	m2.run("dpkg", "-i", "/tmp/flatmesh.deb")
	if p, a := m2.show("MainPID"), m2.try("systemctl", "is-active", "flatmesh"); p == pid || a != "active" {
		t.Errorf("after an upgrade: MainPID %s (was %s), %s", p, pid, a)
	}
	m1.waitPeer("m2", "alive", 30*time.Second)

	// systemctl stop: the others see "left".
	m3.run("systemctl", "stop", "flatmesh")
	m1.waitPeer("m3", "left", 15*time.Second)
	m2.waitPeer("m3", "left", 15*time.Second)

	// Removing the package stops a running agent.
	m3.run("systemctl", "start", "flatmesh")
	m1.waitPeer("m3", "alive", 30*time.Second)
	m3.run("dpkg", "-r", "flatmesh")
	if st := m3.try("systemctl", "is-active", "flatmesh"); st != "inactive" {
		t.Errorf("after dpkg -r the agent is %q", st)
	}
	m1.waitPeer("m3", "left", 15*time.Second)
	if out := m3.try("sh", "-c", "test -e /usr/bin/flatmesh || echo gone"); out != "gone" {
		t.Errorf("dpkg -r left /usr/bin/flatmesh")
	}
	tm := r.Timings()
	t.Logf("timings: rootfs %s (built now: %v), boot %v, agent ready (provision.sh) %v, test %s",
		tm.Rootfs.Round(time.Millisecond), tm.RootfsBuilt, tm.Boot, tm.AgentReady, time.Since(testStart).Round(time.Second))
}

// checkUnit: systemd sees a notify service with a watchdog and a status a
// person can read, run under the unit's sandbox.
func checkUnit(t *testing.T, m machineT) {
	t.Helper()
	if got := m.show("Type"); got != "notify" {
		t.Errorf("Type=%s", got)
	}
	if got := m.show("WatchdogUSec"); got != "30s" {
		t.Errorf("WatchdogUSec=%s", got)
	}
	eventually(t, 15*time.Second, "status text", func() string {
		if s := m.show("StatusText"); s != "vxlan mode, 3 of 3 members alive, data plane in sync" {
			return fmt.Sprintf("StatusText=%q", s)
		}
		return ""
	})
	if got := m.show("ProtectSystem"); got != "strict" {
		t.Errorf("ProtectSystem=%s", got)
	}
}

// streamAcrossRestarts keeps a TCP stream from m1's container to m2's going
// while both agents are restarted with systemctl restart.
func streamAcrossRestarts(t *testing.T, r *rig.Rig, from, to machineT, ips map[string]netip.Addr) {
	t.Helper()
	netnsOf := func(m machineT) string {
		p, err := r.RootPath(m.name, "/run/netns/c1")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	var ln net.Listener
	if err := kernel.InNetns(netnsOf(to), func() (err error) { ln, err = net.Listen("tcp", ":7777"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		remote netip.Addr
		sum    string
		n      int64
		err    error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		h := sha256.New()
		n, err := io.Copy(h, c)
		ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		done <- result{ap.Addr().Unmap(), hex.EncodeToString(h.Sum(nil)), n, err}
	}()
	var c net.Conn
	if err := kernel.InNetns(netnsOf(from), func() (err error) {
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(ips[to.name], 7777).String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	h := sha256.New()
	var sent int64
	buf := make([]byte, 16<<10)
	for i := 0; i < 100; i++ {
		rng.Read(buf)
		h.Write(buf)
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(buf); err != nil {
			t.Fatalf("stream broke at chunk %d: %v", i, err)
		}
		sent += int64(len(buf))
		switch i {
		case 20:
			start := time.Now()
			from.run("systemctl", "restart", "flatmesh")
			t.Logf("systemctl restart on %s (until READY): %s", from.name, time.Since(start).Round(time.Millisecond))
		case 50:
			to.run("systemctl", "restart", "flatmesh")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Close()
	select {
	case res := <-done:
		if res.err != nil || res.n != sent || res.sum != hex.EncodeToString(h.Sum(nil)) {
			t.Fatalf("stream across restarts: got %d bytes (err %v), sent %d; hashes equal: %v", res.n, res.err, sent, res.sum == hex.EncodeToString(h.Sum(nil)))
		}
		if res.remote != ips[from.name] {
			t.Fatalf("the stream arrived from %s, not %s's container %s (NAT?)", res.remote, from.name, ips[from.name])
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the stream's receiver did not finish")
	}
}

// rebootKeepsAddresses stops and boots m's nspawn machine; its enabled
// agent comes back by itself with the same underlay address and blocks.
func rebootKeepsAddresses(t *testing.T, r *rig.Rig, observer, m machineT) {
	t.Helper()
	before := ownedBlocks(t, m)
	start := time.Now()
	if err := r.Reboot(context.Background(), m.name); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, m.name+"'s agent back after reboot", func() string {
		if a := m.try("systemctl", "is-active", "flatmesh"); a != "active" {
			return "agent " + a
		}
		return ""
	})
	t.Logf("reboot of %s: agent active again after %s", m.name, time.Since(start).Round(time.Millisecond))
	observer.waitPeer(m.name, "alive", 30*time.Second)
	var st api.Status
	if err := json.Unmarshal([]byte(m.run("flatmesh", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	mm, _ := r.Machine(m.name)
	if st.Underlay != mm.Addr.Addr().String() {
		t.Errorf("after reboot %s advertises %s, want %s", m.name, st.Underlay, mm.Addr.Addr())
	}
	if after := ownedBlocks(t, m); strings.Join(after, ",") != strings.Join(before, ",") || len(after) == 0 {
		t.Errorf("after reboot %s owns blocks %v, before %v", m.name, after, before)
	}
}

func ownedBlocks(t *testing.T, m machineT) []string {
	t.Helper()
	var ip api.IPAM
	if err := json.Unmarshal([]byte(m.run("flatmesh", "ipam", "--json")), &ip); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range ip.Blocks {
		if b.Owner == m.name {
			out = append(out, b.Prefix)
		}
	}
	return out
}

// checkDoctor: flatmesh doctor passes on a healthy machine, and finds m2's
// ports rejected by a firewall (its probes are real packets).
func checkDoctor(t *testing.T, m, other machineT) {
	t.Helper()
	doc := func() (doctor.Report, error) {
		out, err := m.r.Exec(context.Background(), m.name, "flatmesh", "doctor", "--json")
		var rep doctor.Report
		if jerr := json.Unmarshal(out, &rep); jerr != nil {
			t.Fatalf("doctor --json: %v\n%s", jerr, out)
		}
		return rep, err
	}
	rep, err := doc()
	if err != nil || !rep.OK {
		t.Fatalf("doctor on a healthy machine: %v %+v", err, rep)
	}
	for _, c := range rep.Checks {
		if c.Check == "members" || c.Check == "clock" || c.Check == "mtu" || c.Check == "firewall" {
			if c.Status != doctor.OK {
				t.Errorf("doctor %s: %s %s", c.Check, c.Status, c.Detail)
			}
		}
	}
	rules := [][]string{{"-p", "tcp", "--dport", "7496", "-j", "REJECT"}, {"-p", "udp", "--dport", "4789", "-j", "REJECT"}}
	for _, r := range rules {
		other.run(append([]string{"iptables", "-I", "INPUT"}, r...)...)
	}
	rep, err = doc()
	for _, r := range rules {
		other.run(append([]string{"iptables", "-D", "INPUT"}, r...)...)
	}
	if err == nil || rep.OK {
		t.Fatalf("doctor exits 0 with %s's ports rejected: %+v", other.name, rep)
	}
	for _, c := range rep.Checks {
		if c.Check == "members" && (c.Status != doctor.Fail || !strings.Contains(c.Detail, other.name+" (gossip") || !strings.Contains(c.Detail, "4789/udp")) {
			t.Errorf("doctor members with %s rejected: %s %s", other.name, c.Status, c.Detail)
		}
	}
}

// checkMetrics turns metrics on in m1's config, restarts the agent, and
// scrapes it from inside the machine's network namespace (loopback).
func checkMetrics(t *testing.T, r *rig.Rig, m machineT) {
	t.Helper()
	m.run("sh", "-c", `echo 'metrics_addr = "127.0.0.1:9496"' >> /etc/flatmesh/flatmesh.hcl`)
	m.run("systemctl", "restart", "flatmesh")
	mm, _ := r.Machine(m.name)
	var text string
	eventually(t, 15*time.Second, "metrics with 3 members alive and gossip traffic", func() string {
		// The transport dials on its own goroutines: each dial enters the
		// machine's namespace itself.
		tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = kernel.InNetns("/run/netns/"+mm.Netns, func() error {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}
		defer tr.CloseIdleConnections()
		var body []byte
		resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get("http://127.0.0.1:9496/metrics")
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			return err.Error()
		}
		text = string(body)
		for _, re := range []string{`(?m)^flatmesh_members\{state="alive"\} 3$`, `(?m)^flatmesh_reconcile_passes_total [1-9]`,
			`(?m)^flatmesh_gossip_bytes_total\{direction="received",proto="udp"\} [1-9]`, `(?m)^flatmesh_ipam_blocks\{owner="self"\} [1-9]`} {
			if !regexp.MustCompile(re).MatchString(text) {
				return "no match for " + re
			}
		}
		return ""
	})
	if pt, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(pt, "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("promtool check metrics on the agent's /metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed: the exposition is not linted here")
	}
}

// watchdogRestartsAStuckAgent shortens WatchdogSec (still above the 10 s
// resync, so an idle agent keeps pinging), checks a healthy agent outlives
// it, then freezes the agent (SIGSTOP): its passes stop, so do the pings,
// and systemd kills and restarts it.
func watchdogRestartsAStuckAgent(t *testing.T, m machineT) {
	t.Helper()
	dropIn := "/etc/systemd/system/flatmesh.service.d/watchdog-test.conf"
	m.run("sh", "-c", "mkdir -p $(dirname "+dropIn+") && printf '[Service]\\nWatchdogSec=12s\\nTimeoutAbortSec=2s\\n' > "+dropIn+
		" && systemctl daemon-reload && systemctl restart flatmesh")
	defer m.run("sh", "-c", "rm -f "+dropIn+" && systemctl daemon-reload && systemctl restart flatmesh")
	if got := m.show("WatchdogUSec"); got != "12s" {
		t.Fatalf("drop-in not applied: WatchdogUSec=%s", got)
	}
	pid, restarts := m.show("MainPID"), m.show("NRestarts")
	time.Sleep(14 * time.Second)
	if p := m.show("MainPID"); p != pid {
		t.Fatalf("a healthy agent was restarted by the watchdog (MainPID %s -> %s): the reconcile loop does not ping", pid, p)
	}
	m.run("kill", "-STOP", pid)
	start := time.Now()
	eventually(t, 30*time.Second, "the watchdog restarts a frozen agent", func() string {
		if p, a := m.show("MainPID"), m.try("systemctl", "is-active", "flatmesh"); p == pid || p == "0" || a != "active" || m.show("NRestarts") == restarts {
			return fmt.Sprintf("MainPID %s active %s NRestarts %s", p, a, m.show("NRestarts"))
		}
		return ""
	})
	t.Logf("watchdog: frozen agent replaced after %s", time.Since(start).Round(time.Millisecond))
	if j := m.try("journalctl", "-u", "flatmesh", "--no-pager"); !strings.Contains(j, "Watchdog timeout") {
		t.Errorf("the journal does not say the watchdog fired")
	}
}
