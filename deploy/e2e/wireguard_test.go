package e2e

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// marker is sent in clear inside a TCP stream; it must never show on the
// lab switch.
const marker = "FLATMESH-PLAINTEXT-MARKER-"

// TestRootWireGuardDataPlane runs 3 hosts x 2 containers in wireguard mode
// (the embedded wireguard-go: this kernel has no WireGuard module) and
// checks the full mesh, that the switch carries only WireGuard and gossip
// between hosts, that a non-member with its own key pair gets nothing to a
// container, and key rotation and an agent SIGKILL during TCP streams.
func TestRootWireGuardDataPlane(t *testing.T) {
	kerneltest.RequireCommands(t, "tcpdump", "wg", "unshare")
	l := upLab(t, lab.Options{Hosts: 3, ContainersPerHost: 2, Mode: lab.ModeWireGuard})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c11, _ := l.Container("c11")
	c21, _ := l.Container("c21")

	st, err := l.AgentStatus(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if st.WGDevice != "userspace" || st.MTU != 1440 {
		t.Errorf("status: wg_device %q mtu %d, want userspace and 1440 (1500 - 60)", st.WGDevice, st.MTU)
	}

	t.Run("full mesh over wireguard, switch sees only ciphertext", func(t *testing.T) {
		pcap := filepath.Join(t.TempDir(), "switch.pcap")
		stop := capture(t, l.Switch().Netns, "sw0", pcap, "")
		failed := 0
		for _, r := range l.PingMesh(ctx) {
			if !r.OK() {
				failed++
				t.Errorf("%s -> %s (%s): %d/%d replies %s", r.From, r.To, r.Addr, r.Received, r.Sent, r.Err)
			}
		}
		s := listenIn(t, c21.Netns, 5101)
		conn := dialIn(t, c11.Netns, netip.AddrPortFrom(c21.IP.Addr(), 5101))
		payload := bytes.Repeat([]byte(marker), 40000)
		if _, err := conn.Write(payload); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if r := waitSink(t, s, 30*time.Second); r.n != int64(len(payload)) || r.remote != c11.IP.Addr() {
			t.Fatalf("received %d bytes from %s, sent %d from %s", r.n, r.remote, len(payload), c11.IP.Addr())
		}
		stop()
		checkCiphertextOnly(t, pcap, l)
	})

	t.Run("non-member with its own key pair reaches no container", func(t *testing.T) {
		nonMember(t, l, c11.IP.Addr())
	})

	h1, _ := l.Host("h1")
	t.Run("rotation during a tcp stream", func(t *testing.T) {
		oldKey := peerKey(t, l, "h2", "h1")
		s := listenIn(t, c21.Netns, 5102)
		conn := dialIn(t, c11.Netns, netip.AddrPortFrom(c21.IP.Addr(), 5102))
		rotated := make(chan error, 1)
		var stall stallMeter
		sum, err := sendPaced(conn, 4<<20, 64<<10, 30*time.Millisecond, func(i int) {
			stall.tick()
			if i == 10 {
				_, err := l.CLI("h1", "wg", "rotate")
				rotated <- err
			}
		})
		conn.Close()
		if err != nil {
			t.Fatalf("stream broke around the rotation: %v", err)
		}
		if err := <-rotated; err != nil {
			t.Fatal(err)
		}
		if r := waitSink(t, s, 30*time.Second); r.sum != sum {
			t.Fatalf("stream corrupted: receiver sum %s, sender %s", r.sum, sum)
		}
		t.Logf("FIGURE: key rotation during a stream: longest write stall %s (chunks every 30 ms otherwise)", stall.max.Round(time.Millisecond))
		newKey := peerKey(t, l, "h2", "h1")
		if newKey == oldKey || newKey == "" {
			t.Fatalf("h2 still knows h1 by %q (was %q)", newKey, oldKey)
		}
		dump, err := l.WG(ctx, "h2", "show", "flatmesh.wg", "peers")
		if err != nil || strings.Contains(string(dump), oldKey) || !strings.Contains(string(dump), newKey) {
			t.Fatalf("h2's device peers after the rotation (err %v):\n%s", err, dump)
		}
	})

	t.Run("agent SIGKILL and restart during a tcp stream; restart changes nothing", func(t *testing.T) {
		before := kernelSnapshot(t, h1.Netns)
		s := listenIn(t, c21.Netns, 5103)
		conn := dialIn(t, c11.Netns, netip.AddrPortFrom(c21.IP.Addr(), 5103))
		// With the agent dead the tunnel stops and the sender blocks: the
		// restart runs on its own clock, a second after the kill.
		killed := make(chan error, 1)
		restarted := make(chan time.Time, 1)
		var stall stallMeter
		sum, err := sendPaced(conn, 4<<20, 64<<10, 50*time.Millisecond, func(i int) {
			stall.tick()
			if i != 10 {
				return
			}
			err := l.StopAgent("h1", syscall.SIGKILL)
			killed <- err
			go func() {
				time.Sleep(time.Second)
				restarted <- time.Now()
				if err := l.StartAgent("h1"); err != nil {
					t.Error(err)
				}
			}()
		})
		conn.Close()
		var restartedAt time.Time
		select {
		case restartedAt = <-restarted:
		case <-time.After(10 * time.Second):
			t.Fatalf("the agent was never restarted (stream error: %v)", err)
		}
		if err != nil {
			t.Fatalf("stream broke while the agent was down or restarting: %v", err)
		}
		if err := <-killed; err != nil {
			t.Fatal(err)
		}
		if r := waitSink(t, s, 30*time.Second); r.sum != sum {
			t.Fatalf("stream corrupted: receiver sum %s, sender %s", r.sum, sum)
		}
		if err := l.WaitReady(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		// Let the restarted agent run a few passes, then compare.
		time.Sleep(2 * time.Second)
		if after := kernelSnapshot(t, h1.Netns); after != before {
			t.Errorf("the restart changed the kernel state:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		logText, _ := os.ReadFile(h1.LogFile)
		restart := logText[bytes.LastIndex(logText, []byte("flatmesh lab: starting")):]
		if bytes.Contains(restart, []byte("data plane changed")) {
			t.Errorf("the restarted agent changed the data plane:\n%s", restart)
		}
		if m := regexp.MustCompile(`created=(\w+).*ready_in=(\S+)`).FindSubmatch(restart); m == nil || string(m[1]) != "false" {
			t.Errorf("the restarted agent did not adopt the device:\n%s", restart)
		} else {
			t.Logf("FIGURE: restarted agent re-attached to the device and programmed it in %s; the stream stalled %s in all "+
				"(agent dead for 1 s, then its start), resumed %s after the start command",
				m[2], stall.max.Round(time.Millisecond), stall.firstAfter(restartedAt).Round(time.Millisecond))
		}
	})

	t.Run("rotation with idle peers: both sides handshake at once", func(t *testing.T) {
		rotationHandshakes(t, ctx, l, "h2", []string{"h1", "h3"})
	})

	t.Run("purge removes the device, routes and chains", func(t *testing.T) {
		h3, _ := l.Host("h3")
		if out, err := cli(l, "h3", "leave", "--purge"); err != nil {
			t.Fatalf("leave --purge: %s", out)
		}
		if code, err := l.WaitAgentExit("h3", 20*time.Second); err != nil || code != 0 {
			t.Fatalf("agent after leave --purge: exit %d, %v", code, err)
		}
		links := kerneltest.Run(t, "ip", "-n", h3.Netns, "-o", "link", "show")
		if strings.Contains(links, "flatmesh.wg") || strings.Contains(links, "flatmesh0") {
			t.Errorf("links left after the purge:\n%s", links)
		}
		if rules := kerneltest.NsRun(t, h3.Netns, "iptables-save"); strings.Contains(rules, "FLATMESH") {
			t.Errorf("firewall chains left after the purge:\n%s", rules)
		}
	})
}

// capture runs tcpdump on iface in namespace ns into file (packets that
// match filter, all when "") until stop.
func capture(t *testing.T, ns, iface, file, filter string) (stop func()) {
	t.Helper()
	args := []string{"netns", "exec", ns, "tcpdump", "-i", iface, "-nn", "-s", "0", "-U", "-w", file}
	if filter != "" {
		args = append(args, filter)
	}
	cmd := exec.Command("ip", args...)
	var stderr syncBuffer // written by exec's copier while we poll it
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	kerneltest.Eventually(t, 5*time.Second, "tcpdump to listen", func() bool {
		return strings.Contains(stderr.String(), "listening on")
	})
	return func() {
		time.Sleep(300 * time.Millisecond) // the last packets
		_ = cmd.Process.Signal(syscall.SIGINT)
		<-done
	}
}

// checkCiphertextOnly reads the capture: between hosts only UDP to or from
// the WireGuard port and gossip; no container address in any header; the
// plain-text marker nowhere in the bytes.
func checkCiphertextOnly(t *testing.T, pcap string, l *lab.Lab) {
	t.Helper()
	raw, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(marker)) {
		t.Error("the plain-text marker of the TCP stream shows on the switch")
	}
	text, err := exec.Command("tcpdump", "-nn", "-r", pcap, "ip and not igmp").Output() // stdout only
	if err != nil {
		t.Fatal(err)
	}
	wg, gossip := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(string(text)), "\n") {
		switch {
		case line == "":
		case strings.Contains(line, "10.213."):
			t.Errorf("a container address in clear on the switch: %s", line)
		case strings.Contains(line, ".51820:") && strings.Contains(line, "UDP") || strings.Contains(line, ".51820 >") && strings.Contains(line, "UDP"):
			wg++
		case strings.Contains(line, ".7496"):
			gossip++
		default:
			t.Errorf("unexpected packet between hosts: %s", line)
		}
	}
	t.Logf("switch capture: %d WireGuard packets, %d gossip packets, %d bytes", wg, gossip, len(raw))
	if wg < 100 {
		t.Errorf("only %d WireGuard packets seen: the capture did not see the traffic", wg)
	}
}

// nonMember plugs a namespace into the switch that runs its own WireGuard
// device (wireguard-go of the module version flatmesh embeds) with its own
// key, configured with h1's public key and endpoint; it must not get a
// packet to target. Positive controls: it reaches h1's underlay, and it
// does send handshakes, which h1's firewall drops.
func nonMember(t *testing.T, l *lab.Lab, target netip.Addr) {
	wgBin := filepath.Join(t.TempDir(), "wireguard-go")
	if out, err := exec.Command("go", "build", "-o", wgBin, "golang.zx2c4.com/wireguard").CombinedOutput(); err != nil {
		t.Fatalf("building wireguard-go: %v\n%s", err, out)
	}
	ns := kerneltest.Netns(t, "ex")
	port := "x" + strconv.Itoa(os.Getpid()%100000)
	sw := l.Switch().Netns
	kerneltest.Run(t, "ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	t.Cleanup(func() { _, _ = kerneltest.Output("ip", "-n", sw, "link", "del", port) })
	kerneltest.Run(t, "ip", "-n", sw, "link", "set", port, "master", "sw0", "up")
	kerneltest.Run(t, "ip", "-n", ns, "addr", "add", "10.99.0.200/24", "dev", "eth0")
	kerneltest.Run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	kerneltest.NsRun(t, ns, "ping", "-c", "1", "-W", "2", "10.99.0.1") // the underlay is reachable

	// Its own mount namespace, so its UAPI socket collides with nothing.
	dev := "wgx"
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(strings.TrimSpace(kerneltest.Run(t, "wg", "genkey"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h1Key := peerKey(t, l, "h2", "h1")
	script := strings.Join([]string{
		"mkdir -p /run/wireguard", "mount -t tmpfs none /run/wireguard",
		wgBin + " " + dev,
		"wg set " + dev + " private-key " + keyFile + " peer " + h1Key + " endpoint 10.99.0.1:51820 allowed-ips 10.213.0.0/16",
		"ip addr add 10.213.250.250/32 dev " + dev, "ip link set " + dev + " up",
		"ip route add 10.213.0.0/16 dev " + dev,
		"ping -c 3 -W 1 " + target.String() + " && echo REACHED",
		"wg show " + dev + " transfer",
	}, "\n")
	cmd := exec.Command("ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	out, _ := cmd.CombinedOutput()
	t.Cleanup(func() { killNetnsProcs(ns) })
	text := string(out)
	if strings.Contains(text, "REACHED") {
		t.Fatalf("a non-member reached container %s:\n%s", target, text)
	}
	m := regexp.MustCompile(`\t(\d+)\t(\d+)`).FindStringSubmatch(text)
	if m == nil || m[2] == "0" {
		t.Fatalf("the non-member's device sent nothing (the test proves nothing):\n%s", text)
	}
	h1, _ := l.Host("h1")
	rules, drops := tunnelPortDrops(t, h1.Netns, 51820)
	if drops == 0 {
		t.Errorf("h1's firewall dropped nothing on the WireGuard port:\n%s", rules)
	}
	t.Logf("non-member: sent %s bytes of handshakes, got %s back; h1's scope rule:\n%s", m[2], m[1], rules)
}

// killNetnsProcs kills the processes (our wireguard-go) left in a namespace
// this test created.
func killNetnsProcs(ns string) {
	out, _ := kerneltest.Output("ip", "netns", "pids", ns)
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// peerKey is the WireGuard public key host observer knows peer by.
func peerKey(t *testing.T, l *lab.Lab, observer, peer string) string {
	t.Helper()
	ps, err := l.Peers(context.Background(), observer)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Name == peer {
			return p.WGPublicKey
		}
	}
	t.Fatalf("%s does not know %s", observer, peer)
	return ""
}

// kernelSnapshot is what a restart must not change: the device (index and
// flags), our routes and the bridge's addresses.
func kernelSnapshot(t *testing.T, netns string) string {
	t.Helper()
	link := kerneltest.Run(t, "ip", "-n", netns, "-o", "link", "show", "flatmesh.wg")
	link = regexp.MustCompile(`\\\s+link/none.*`).ReplaceAllString(link, "")
	// The operational state of a TUN reads UNKNOWN until a reader
	// re-attaches, then UP: the kernel's report, not a change of ours.
	link = regexp.MustCompile(`state \S+ `).ReplaceAllString(link, "")
	routes := kerneltest.Run(t, "ip", "-n", netns, "route", "show", "proto", "95")
	addrs := kerneltest.Run(t, "ip", "-n", netns, "-o", "addr", "show", "dev", "flatmesh0")
	addrs = regexp.MustCompile(`valid_lft.*`).ReplaceAllString(addrs, "")
	return link + routes + addrs
}

// stallMeter records when each chunk of a stream was written: the longest
// gap is the outage the stream saw.
type stallMeter struct {
	last  time.Time
	max   time.Duration
	ticks []time.Time
}

func (s *stallMeter) tick() {
	now := time.Now()
	if !s.last.IsZero() && now.Sub(s.last) > s.max {
		s.max = now.Sub(s.last)
	}
	s.last = now
	s.ticks = append(s.ticks, now)
}

// firstAfter is how long after t the first chunk was written.
func (s *stallMeter) firstAfter(t time.Time) time.Duration {
	for _, x := range s.ticks {
		if x.After(t) {
			return x.Sub(t)
		}
	}
	return -1
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rotationHandshakes rotates host's key while no container sends anything
// and checks that each of peers handshakes with the new key within 2 s
// (the agents start handshakes on a rotation and on a learned key; before,
// an idle pair waited for traffic and then for WireGuard's 5 s retry),
// that host's own entries for them are fresh too, and that a first packet
// then gets through at once.
func rotationHandshakes(t *testing.T, ctx context.Context, l *lab.Lab, host string, peers []string) {
	time.Sleep(1100 * time.Millisecond) // older handshakes fall in an earlier second
	start := time.Now()
	if _, err := l.CLI(host, "wg", "rotate"); err != nil {
		t.Fatal(err)
	}
	latest := func(on string) map[string]int64 {
		out, err := l.WG(ctx, on, "show", "flatmesh.wg", "latest-handshakes")
		if err != nil {
			t.Fatalf("wg show on %s: %v: %s", on, err, out)
		}
		m := map[string]int64{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				m[f[0]], _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
		return m
	}
	for _, p := range peers {
		var took time.Duration
		kerneltest.Eventually(t, 2*time.Second, p+" to handshake with "+host+"'s new key", func() bool {
			k := peerKey(t, l, p, host)
			if ts := latest(p)[k]; k != "" && ts >= start.Unix() {
				took = time.Since(start)
				return true
			}
			return false
		})
		t.Logf("FIGURE: idle peer %s handshook with %s's new key within %s of the rotate command", p, host, took.Round(time.Millisecond))
	}
	mine := latest(host)
	for _, p := range peers {
		if k := peerKey(t, l, host, p); mine[k] < start.Unix() {
			t.Errorf("%s's last handshake with %s at %d, before the rotation (%d)", host, p, mine[k], start.Unix())
		}
	}
	from, _ := l.Container("c" + peers[0][1:] + "1")
	to, _ := l.Container("c" + host[1:] + "1")
	kerneltest.NsRun(t, from.Netns, "ping", "-c", "1", "-W", "1", to.IP.Addr().String())
}
