package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

// Names of the WireGuard suite (all "fb...", see env_linux.go).
const (
	labWG     = "fbw"  // flatmesh in wireguard mode
	nsRefWG   = "fbrq" // hand-built wireguard-go path
	nsRefWGFW = "fbrx" // the same with flatmesh's firewall rules (--firewall-ref)
	wgPort    = "51820"
	wgMod     = "golang.zx2c4.com/wireguard"
)

// wireguardSuite measures the WireGuard figures: (a) flatmesh wireguard mode
// (its embedded wireguard-go), (b) the same topology built by hand with a
// standalone wireguard-go of the same module version and `wg`, (c) the
// native routed path.
func (e *env) wireguardSuite(ctx context.Context) (*SuiteReport, error) {
	rep := &SuiteReport{Title: "WireGuard: container to container across 2 hosts, iperf3 TCP"}
	version, bin, err := e.buildWireGuardGo(ctx)
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(filepath.Dir(bin))
	l, err := e.upLab(ctx, labWG, lab.ModeWireGuard)
	if err != nil {
		return rep, err
	}
	st, err := l.AgentStatus(ctx, l.Hosts()[0].Name)
	if err != nil {
		return rep, err
	}
	a, err := labPath(l, "a", "flatmesh-wireguard", "flatmesh WireGuard ("+st.WGDevice+")")
	if err != nil {
		return rep, err
	}
	for _, h := range l.Hosts() {
		a.Procs = append(a.Procs, h.PID)
	}
	a.CPUOf = "both agents (embedded wireguard-go)"
	mtu := l.Containers()[0].MTU
	e.say("building the hand-built wireguard-go path (%s-*) and the native routed path (%s-*)", nsRefWG, nsNative)
	b, stop, err := e.buildWireGuardRef(ctx, bin, mtu,
		refPath{Prefix: nsRefWG, Key: "b", Name: "hand-built-wireguard-go", Label: "hand-built wireguard-go"})
	defer stop()
	if err != nil {
		return rep, err
	}
	c, err := e.buildNative(ctx)
	if err != nil {
		return rep, err
	}
	rep.Setup = []string{
		fmt.Sprintf("(a) lab %s: flatmesh agents in wireguard mode, %s device (wireguard-go %s embedded), c11 -> c21 (mtu %d)", labWG, st.WGDevice, version, mtu),
		fmt.Sprintf("(b) %s-*: standalone wireguard-go %s (go install %s@%s) + wg, bridge + veth container, route via the device, same mtu, no agent", nsRefWG, version, wgMod, version),
		fmt.Sprintf("(c) %s-*: container veths routed by the hosts via the other host's underlay address, mtu 1500, no encapsulation", nsNative),
	}
	rep.Setup = append(rep.Setup, sessionNote())
	paths, pairs := []benchPath{a, b, c}, [][2]string{{"a", "b"}, {"a", "c"}, {"b", "c"}}
	if e.o.FirewallRef {
		// (e), as in the vxlan suite, where (d) is direct routing.
		fw, stopFW, err := e.buildWireGuardRef(ctx, bin, mtu,
			refPath{Prefix: nsRefWGFW, Key: "e", Name: "hand-built-wireguard-go-firewall", Label: "hand-built wireguard-go + fw"})
		defer stopFW()
		if err == nil {
			// "+" is iptables' wildcard: both hosts' devices (fbrx1, fbrx2).
			err = e.copyLabFirewall(ctx, l, nsRefWGFW, map[string]string{"flatmesh0": "br0", "flatmesh.wg": nsRefWGFW + "+"})
		}
		if err != nil {
			return rep, err
		}
		rep.Setup = append(rep.Setup, fmt.Sprintf("(e) %s-*: (b) plus the iptables rules flatmesh's agents installed (copied from the lab hosts)", nsRefWGFW))
		paths = append(paths, fw)
		pairs = append(pairs, [2]string{"a", "e"}, [2]string{"e", "b"})
	}
	rep.Paths, err = e.measure(ctx, "wireguard", paths)
	if err != nil {
		return rep, err
	}
	rep.computeRatios(pairs, e.o.Streams)
	return rep, nil
}

// buildWireGuardGo installs the wireguard-go command of the module version
// flatmesh embeds (go.mod) into a temporary GOBIN.
func (e *env) buildWireGuardGo(ctx context.Context) (version, bin string, err error) {
	out, err := command(ctx, "go", "list", "-m", "-f", "{{.Version}}", wgMod)
	if err != nil {
		return "", "", fmt.Errorf("reading the embedded wireguard-go version: %w", err)
	}
	version = strings.TrimSpace(string(out))
	dir, err := os.MkdirTemp("", "flatmesh-bench-wg-")
	if err != nil {
		return "", "", err
	}
	e.say("go install %s@%s (the version flatmesh embeds) into %s", wgMod, version, dir)
	cmd := exec.CommandContext(ctx, "go", "install", wgMod+"@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go install %s@%s: %w: %s", wgMod, version, err, out)
	}
	return version, filepath.Join(dir, "wireguard"), nil
}

// buildWireGuardRef builds by hand what flatmesh builds in wireguard mode:
// per host a bridge holding the block's gateway with the container's veth
// in it, a wireguard-go device (its own name: UAPI sockets share one
// directory) listening on 51820 with the other host as its one peer
// (endpoint its underlay address, allowed IPs its block), and a route to
// the other block through the device, src our gateway. stop ends the
// wireguard-go processes (always call it).
func (e *env) buildWireGuardRef(ctx context.Context, bin string, mtu int, r refPath) (benchPath, func(), error) {
	var procs []*exec.Cmd
	keyDir, err := os.MkdirTemp("", "flatmesh-bench-wgkeys-")
	stop := func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
			_ = p.Wait()
		}
		_ = os.RemoveAll(keyDir)
	}
	if err != nil {
		return benchPath{}, stop, err
	}
	t, err := e.newTopo(ctx, r.Prefix)
	if err != nil {
		return benchPath{}, stop, err
	}
	dev := func(i int) string { return r.Prefix + strconv.Itoa(i) }
	pubs := make([]string, 3)
	for i := 1; i <= 2; i++ {
		h := t.host(i)
		if err := t.addHost(ctx, i, refUnderlay(i)); err != nil {
			return benchPath{}, stop, err
		}
		p := exec.Command("ip", "netns", "exec", h, bin, "-f", dev(i))
		p.Env = append(os.Environ(), "LOG_LEVEL=error")
		// Its own session, as the lab's agents (and any daemon) have:
		// with sched_autogroup a session is a scheduling group, and a
		// wireguard-go in the bench's session shared the group of the
		// iperf3 processes, which (a) does not (sessionNote).
		p.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := p.Start(); err != nil {
			return benchPath{}, stop, fmt.Errorf("starting wireguard-go: %w", err)
		}
		procs = append(procs, p)
		if err := waitFile(ctx, "/var/run/wireguard/"+dev(i)+".sock"); err != nil {
			return benchPath{}, stop, err
		}
		priv, err := command(ctx, "wg", "genkey")
		if err != nil {
			return benchPath{}, stop, err
		}
		keyFile := filepath.Join(keyDir, dev(i)+".key")
		if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
			return benchPath{}, stop, err
		}
		pub, err := commandInput(ctx, string(priv), "wg", "pubkey")
		if err != nil {
			return benchPath{}, stop, err
		}
		pubs[i] = strings.TrimSpace(string(pub))
		gw := netip.PrefixFrom(refGateway(i), 26)
		err = steps(ctx,
			[]string{h, "link", "add", "br0", "mtu", strconv.Itoa(mtu), "type", "bridge", "stp_state", "0", "forward_delay", "0"},
			[]string{h, "addr", "add", gw.String(), "dev", "br0"},
			[]string{h, "link", "set", "br0", "up"},
			[]string{h, "link", "set", dev(i), "mtu", strconv.Itoa(mtu), "up"})
		if err == nil {
			_, err = nsExec(ctx, h, "wg", "set", dev(i), "private-key", keyFile, "listen-port", wgPort)
		}
		if err == nil {
			err = forwarding(ctx, h)
		}
		if err == nil {
			err = t.addContainer(ctx, contSpec{index: i, host: i, hostIf: "vc" + strconv.Itoa(i), master: "br0",
				mtu: mtu, addr: refContainer(i), gw: refGateway(i)})
		}
		if err != nil {
			return benchPath{}, stop, fmt.Errorf("hand-built wireguard: %w", err)
		}
	}
	for i := 1; i <= 2; i++ {
		j, h := 3-i, t.host(i)
		_, err := nsExec(ctx, h, "wg", "set", dev(i), "peer", pubs[j], "endpoint",
			refUnderlay(j).Addr().String()+":"+wgPort, "allowed-ips", refBlock(j).String())
		if err == nil {
			err = ip(ctx, h, "route", "replace", refBlock(j).String(), "dev", dev(i), "src", refGateway(i).String())
		}
		if err != nil {
			return benchPath{}, stop, fmt.Errorf("hand-built wireguard: %w", err)
		}
	}
	var pids []int
	for _, p := range procs {
		pids = append(pids, p.Process.Pid) // ip netns exec execs wireguard-go in place
	}
	return benchPath{Key: r.Key, Name: r.Name, Label: r.Label, Procs: pids, CPUOf: "both wireguard-go processes",
		Client: t.cont(1), Server: t.cont(2), Addr: refContainer(2).Addr()}, stop, nil
}

// waitFile waits up to 10 s for path to exist.
func waitFile(ctx context.Context, path string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within 10 s", path)
		}
		if err := lab.SleepContext(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// sessionNote says how the tunnel processes are scheduled. With
// kernel.sched_autogroup_enabled each session is one scheduling group: the
// lab's agents run in their own sessions (deploy/lab), and so does each
// standalone wireguard-go. Measured before that was so (interleaved, 4 s
// runs): with wireguard-go in the session of the iperf3 client, (b) needed
// about half the context switches per Gbit/s of (a) (10-11k vs 20-23k;
// (a) was preempted ~10x more often at its TUN writes) and a/b was
// 0.69-0.86; with wireguard-go in its own session both needed ~14k and
// a/b was 0.88-0.99.
func sessionNote() string {
	ag := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/sched_autogroup_enabled"); err == nil {
		ag = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("tunnel processes: each agent and each standalone wireguard-go in its own session (kernel.sched_autogroup_enabled=%s: 1 = one scheduling group per session)", ag)
}
