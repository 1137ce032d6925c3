package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

const vxlanDevice = "flatmesh.vx" // docs/architecture.md

// labPath is the path between the lab's two containers (c11 -> c21).
func labPath(l *lab.Lab, key, name, label string) (benchPath, error) {
	cs := l.Containers()
	if len(cs) < 2 || cs[0].Host == cs[1].Host {
		return benchPath{}, fmt.Errorf("lab %s: want one container on each of two hosts, have %d", l.Name(), len(cs))
	}
	return benchPath{Key: key, Name: name, Label: label, Client: cs[0].Netns, Server: cs[1].Netns, Addr: cs[1].IP.Addr()}, nil
}

// txChecksum reads whether tx checksum offload is on for dev in ns.
func txChecksum(ctx context.Context, ns, dev string) (bool, error) {
	out, err := nsExec(ctx, ns, "ethtool", "-k", dev)
	if err != nil {
		return false, err
	}
	on, ok := parseEthtoolFeature(string(out), "tx-checksumming")
	if !ok {
		return false, fmt.Errorf("ethtool -k %s in %s: no tx-checksumming line", dev, ns)
	}
	return on, nil
}

// vxlanSuite measures the VXLAN figures: flatmesh (a), hand-built (b),
// native routed (c), flatmesh with --direct-routing (d), attach, burst and
// join. It returns what it measured even when a later phase fails (the
// error says which).
func (e *env) vxlanSuite(ctx context.Context) (*SuiteReport, error) {
	rep := &SuiteReport{Title: "VXLAN: container to container across 2 hosts, iperf3 TCP"}
	l, err := e.upLab(ctx, labVXLAN, lab.ModeVXLAN)
	if err != nil {
		return rep, err
	}
	a, err := labPath(l, "a", "flatmesh-vxlan", "flatmesh VXLAN")
	if err != nil {
		return rep, err
	}
	mtu := l.Containers()[0].MTU
	tx, err := txChecksum(ctx, l.Hosts()[0].Netns, vxlanDevice)
	if err != nil {
		return rep, err
	}
	e.say("flatmesh's %s: mtu %d, tx checksum offload %s; the hand-built path copies both", vxlanDevice, mtu, onOff(tx))
	e.say("building the hand-built VXLAN path (%s-*) and the native routed path (%s-*)", nsRefVX, nsNative)
	b, err := e.buildVXLANRef(ctx, vxlanRef{MTU: mtu, TxChecksum: tx,
		refPath: refPath{Prefix: nsRefVX, Key: "b", Name: "hand-built-vxlan", Label: "hand-built VXLAN"}})
	if err != nil {
		return rep, err
	}
	rt, err := e.buildVXLANRef(ctx, vxlanRef{MTU: mtu, TxChecksum: tx, Routed: true,
		refPath: refPath{Prefix: nsRefVXRt, Key: "r", Name: "hand-built-vxlan-routed", Label: "hand-built VXLAN, routed veths"}})
	if err != nil {
		return rep, err
	}
	c, err := e.buildNative(ctx)
	if err != nil {
		return rep, err
	}
	f, err := e.buildNativePath(ctx, true)
	if err != nil {
		return rep, err
	}
	ld, err := e.upLab(ctx, labVXLANDirect, lab.ModeVXLAN, "--direct-routing")
	if err != nil {
		return rep, err
	}
	d, err := labPath(ld, "d", "flatmesh-vxlan-direct", "flatmesh VXLAN --direct-routing")
	if err != nil {
		return rep, err
	}
	rep.Setup = []string{
		fmt.Sprintf("(a) lab %s: flatmesh agents in vxlan mode, c11 -> c21 (mtu %d, tx checksum offload %s)", labVXLAN, mtu, onOff(tx)),
		fmt.Sprintf("(b) %s-*: bridge + vxlan device, static fdb/neigh/on-link route like flatmesh's, same mtu and offload, no agent", nsRefVX),
		fmt.Sprintf("(c) %s-*: container veths routed by the hosts via the other host's underlay address, mtu 1500, no encapsulation", nsNative),
		fmt.Sprintf("(d) lab %s: flatmesh agents in vxlan mode with --direct-routing (hosts on one subnet: plain routes, no encapsulation; container mtu %d)",
			labVXLANDirect, ld.Containers()[0].MTU),
		fmt.Sprintf("(f) %s-*: (c) with each host's gateway on a bridge and the container's veth a port of it, as flatmesh's (d) has", nsNativeB),
		fmt.Sprintf("(r) %s-*: (b) without the bridge: the gateway on the host end of the container's veth, routed (no br_netfilter on container frames)", nsRefVXRt),
	}
	paths := []benchPath{a, b, c, d, f, rt}
	pairs := [][2]string{{"a", "b"}, {"a", "c"}, {"b", "c"}, {"d", "c"}, {"d", "f"}, {"f", "c"}, {"r", "b"}}
	if e.o.FirewallRef {
		fw, err := e.buildVXLANRef(ctx, vxlanRef{MTU: mtu, TxChecksum: tx,
			refPath: refPath{Prefix: nsRefVXFW, Key: "e", Name: "hand-built-vxlan-firewall", Label: "hand-built VXLAN + fw"}})
		if err == nil {
			err = e.copyLabFirewall(ctx, l, nsRefVXFW, map[string]string{"flatmesh0": "br0", vxlanDevice: "vx0"})
		}
		if err == nil && e.o.FWMembers > 0 {
			err = growMemberSets(nsRefVXFW, e.o.FWMembers)
		}
		if err != nil {
			return rep, err
		}
		rep.Setup = append(rep.Setup, fmt.Sprintf("(e) %s-*: (b) plus the iptables rules flatmesh's agents installed (copied from the lab hosts)", nsRefVXFW))
		paths = append(paths, fw)
		pairs = append(pairs, [2]string{"a", "e"}, [2]string{"e", "b"})
		s, err := e.buildVXLANRef(ctx, vxlanRef{MTU: mtu, TxChecksum: tx, Routed: true,
			refPath: refPath{Prefix: nsRefVXRF, Key: "s", Name: "hand-built-vxlan-routed-firewall", Label: "routed veths + fw"}})
		if err == nil {
			// Our bridge's rules apply to every container veth instead.
			err = e.copyLabFirewall(ctx, l, nsRefVXRF, map[string]string{"flatmesh0": "vc+", vxlanDevice: "vx0"})
		}
		if err != nil {
			return rep, err
		}
		rep.Setup = append(rep.Setup, fmt.Sprintf("(s) %s-*: (r) plus flatmesh's rules, as (e) (the bridge's name in them becomes the veths' vc+)", nsRefVXRF))
		paths = append(paths, s)
		pairs = append(pairs, [2]string{"s", "b"}, [2]string{"s", "a"})
		if n := e.o.FWMembers; n > 0 {
			g, err := e.buildPerMemberRef(ctx, l, mtu, tx, map[string]string{"flatmesh0": "br0", vxlanDevice: "vx0"}, n)
			if err != nil {
				return rep, err
			}
			rep.Setup = append(rep.Setup,
				fmt.Sprintf("    --fw-members %d: (e)'s member set holds %d addresses (made-up ones from 198.18.0.0/15 beside the real hosts)", n, n),
				fmt.Sprintf("(g) %s-*: (e) with the tunnel guard one rule per member, %d members, the sending peer's rule last (flatmesh's rules before the member set)", nsRefVXPM, n))
			paths = append(paths, g)
			pairs = append(pairs, [2]string{"e", "g"}, [2]string{"g", "b"})
		}
	}
	if err := e.addCompare(ctx, rep, &paths, &pairs, labVXLANCompare, lab.ModeVXLAN, "flatmesh VXLAN"); err != nil {
		return rep, err
	}
	rep.Setup = append(rep.Setup, netfilterNote(ctx, "(a) host 1", l.Hosts()[0].Netns),
		netfilterNote(ctx, "(b) host 1", topo{e: e, prefix: nsRefVX}.host(1)),
		netfilterNote(ctx, "(d) host 1", ld.Hosts()[0].Netns))
	rep.Paths, err = e.measure(ctx, "vxlan", paths)
	if err != nil {
		return rep, err
	}
	rep.computeRatios(pairs, e.o.Streams)
	var errs []error
	host := l.Hosts()[0].Name
	e.say("timing %d attaches and detaches through agent %s", e.o.Attaches, host)
	rep.CLI, rep.Attach, rep.Detach, err = e.attachBench(ctx, l, host, e.o.Attaches)
	errs = append(errs, err)
	if ctx.Err() == nil {
		rep.Burst, err = e.burstBench(ctx, l, host, e.o.Burst)
		errs = append(errs, err)
	}
	if ctx.Err() == nil {
		rep.Join, err = e.joinBench(ctx, l, e.o.Joins)
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// attachBench times n attaches of fresh namespaces through host's agent
// (each a `flatmesh attach` CLI call, process start included), then n
// detaches. The namespaces are removed afterwards. As a baseline it first
// times 20 `flatmesh status` calls: the CLI process and a socket round trip.
func (e *env) attachBench(ctx context.Context, l *lab.Lab, host string, n int) (cli, att, det *LatencyStats, err error) {
	var cliMs []float64
	for range 20 {
		t0 := time.Now()
		if _, err := l.CLIContext(ctx, host, "status", "--json"); err != nil {
			return nil, nil, nil, err
		}
		cliMs = append(cliMs, msSince(t0))
	}
	cli = newLatency(cliMs, 0)
	names, err := e.attachNamespaces(ctx, "", n)
	defer e.removeNamespaces(names)
	if err != nil {
		return cli, nil, nil, err
	}
	var attMs, detMs []float64
	var firstErr error
	attached := names[:0:0]
	for _, ns := range names {
		t0 := time.Now()
		_, err := l.CLIContext(ctx, host, "attach", lab.NetnsPath(ns), "--name", ns, "--json")
		if err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		attMs = append(attMs, msSince(t0))
		attached = append(attached, ns)
	}
	for _, ns := range attached {
		t0 := time.Now()
		if _, err := l.CLIContext(ctx, host, "detach", ns); err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		detMs = append(detMs, msSince(t0))
	}
	att, det = newLatency(attMs, n-len(attMs)), newLatency(detMs, len(attached)-len(detMs))
	e.say("status p50 %s; attach p50 %s p99 %s (%d failed); detach p50 %s p99 %s (%d failed)",
		ms(cli.P50), ms(att.P50), ms(att.P99), att.Failures, ms(det.P50), ms(det.P99), det.Failures)
	if firstErr != nil {
		return cli, att, det, fmt.Errorf("attach/detach: %d of %d attaches and %d detaches failed, first: %w",
			att.Failures, n, det.Failures, firstErr)
	}
	return cli, att, det, nil
}

// copyLabFirewall copies each lab host's iptables rules into the hand-built
// host of the same number in the topology prefix.
func (e *env) copyLabFirewall(ctx context.Context, l *lab.Lab, prefix string, rename map[string]string) error {
	t := topo{e: e, prefix: prefix}
	for i, h := range l.Hosts()[:2] {
		if err := copyFirewall(ctx, h.Netns, t.host(i+1), rename); err != nil {
			return err
		}
	}
	return nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func msSince(t time.Time) float64 { return float64(time.Since(t)) / float64(time.Millisecond) }

const joinIncludes = "new agent process start, memberlist join until it sees every member alive, " +
	"attach of its first container (its first block claimed), gossip of the block, and every other agent's " +
	"reconcile pass, until `ip route show proto 95` on every other host covers the new container; polled every 10 ms"

// joinBench adds tries hosts one after the other and times each join (see
// joinIncludes).
func (e *env) joinBench(ctx context.Context, l *lab.Lab, tries int) (*JoinStats, error) {
	js := &JoinStats{Includes: joinIncludes}
	var total, prop []float64
	for range tries {
		s, err := e.joinOnce(ctx, l)
		if err != nil {
			return js, fmt.Errorf("join: %w", err)
		}
		e.say("join %s: members %s, attached %s, routes on every other host %s, new host has all routes %s",
			s.Host, ms(s.Members), ms(s.Attached), ms(s.RoutesEverywhere), ms(s.NewHostRoutes))
		js.Samples = append(js.Samples, s)
		total = append(total, s.RoutesEverywhere)
		prop = append(prop, s.RoutesEverywhere-s.Attached)
		js.RoutesEverywhere, js.Propagation = median(total), median(prop)
	}
	return js, nil
}

func (e *env) joinOnce(ctx context.Context, l *lab.Lab) (JoinSample, error) {
	var others []lab.Host
	for _, h := range l.Hosts() {
		if l.AgentRunning(h.Name) {
			others = append(others, h)
		}
	}
	if len(others) == 0 {
		return JoinSample{}, fmt.Errorf("lab %s: no agent is running to join", l.Name())
	}
	var targets []netip.Addr // other hosts' containers
	for _, c := range l.Containers() {
		targets = append(targets, c.IP.Addr())
	}
	h, err := l.AddIdleHost(ctx)
	if err != nil {
		return JoinSample{}, err
	}
	s := JoinSample{Host: h.Name}
	start := time.Now()
	if err := l.StartAgent(h.Name, "--join", others[0].Addr().String()); err != nil {
		return s, err
	}
	deadline := start.Add(30 * time.Second)
	for {
		st, err := l.AgentStatus(ctx, h.Name)
		if err == nil && st.Alive == len(others)+1 {
			break
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("%s did not see %d members alive within 30 s (%v); log:\n%s", h.Name, len(others)+1, err, l.LogTail(h.Name, 15))
		}
		if err := lab.SleepContext(ctx, 10*time.Millisecond); err != nil {
			return s, err
		}
	}
	s.Members = msSince(start)
	c, err := l.AddContainer(ctx, h.Name)
	if err != nil {
		return s, err
	}
	s.Attached = msSince(start)
	want := c.IP.Addr()
	for s.RoutesEverywhere == 0 || s.NewHostRoutes == 0 {
		if s.RoutesEverywhere == 0 && routesEverywhere(ctx, others, want) {
			s.RoutesEverywhere = msSince(start)
		}
		if s.NewHostRoutes == 0 && hasRoutes(ctx, h.Netns, targets) {
			s.NewHostRoutes = msSince(start)
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("routes for %s (%s) not on every host within 30 s", h.Name, want)
		}
		if err := lab.SleepContext(ctx, 10*time.Millisecond); err != nil {
			return s, err
		}
	}
	return s, nil
}

// routesEverywhere reports whether every host has a flatmesh route to addr.
func routesEverywhere(ctx context.Context, hosts []lab.Host, addr netip.Addr) bool {
	for _, h := range hosts {
		if !hasRoutes(ctx, h.Netns, []netip.Addr{addr}) {
			return false
		}
	}
	return true
}

// hasRoutes reports whether ns's flatmesh routes (protocol 95) cover every
// address of want.
func hasRoutes(ctx context.Context, ns string, want []netip.Addr) bool {
	out, err := command(ctx, "ip", "-n", ns, "-4", "route", "show", "proto", "95")
	if err != nil {
		return false
	}
	dsts := routeDsts(string(out))
	for _, a := range want {
		if !covered(dsts, a) {
			return false
		}
	}
	return true
}
