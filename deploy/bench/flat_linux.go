package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

const (
	flatBridge   = "fmbr0" // docs/architecture.md
	pingInterval = 50 * time.Millisecond
)

// flatSuite measures the flat LAN figures. It returns what it measured even
// when a later phase fails.
func (e *env) flatSuite(ctx context.Context) (*SuiteReport, error) {
	rep := &SuiteReport{Title: "Flat LAN: across 2 hosts on one LAN, iperf3 TCP"}
	l, err := e.upLab(ctx, labFlat, lab.ModeFlat)
	if err != nil {
		return rep, err
	}
	a, err := labPath(l, "a", "flatmesh-flat", "flatmesh flat bridge")
	if err != nil {
		return rep, err
	}
	e.say("building the hand-built flat bridge (%s-*) and plain NICs (%s-*)", nsRefFlat, nsPlain)
	b, err := e.buildFlatRef(ctx, refPath{Prefix: nsRefFlat, Key: "b", Name: "hand-built-bridge", Label: "hand-built bridge"})
	if err != nil {
		return rep, err
	}
	c, err := e.buildPlain(ctx)
	if err != nil {
		return rep, err
	}
	rep.Setup = []string{
		fmt.Sprintf("(a) lab %s: flatmesh agents in flat mode (NIC in %s), container c11 -> c21", labFlat, flatBridge),
		fmt.Sprintf("(b) %s-*: NIC enslaved in a bridge by hand (its MAC, STP off), containers on veth in it", nsRefFlat),
		fmt.Sprintf("(c) %s-*: host to host over the plain NICs, no bridge", nsPlain),
	}
	paths := []benchPath{a, b, c}
	pairs := [][2]string{{"a", "b"}, {"a", "c"}, {"b", "c"}}
	if e.o.FirewallRef {
		d, err := e.buildFlatRef(ctx, refPath{Prefix: nsRefFlFW, Key: "e", Name: "hand-built-bridge-firewall", Label: "hand-built bridge + fw"})
		if err == nil {
			err = e.copyLabFirewall(ctx, l, nsRefFlFW, map[string]string{flatBridge: "br0"})
		}
		if err != nil {
			return rep, err
		}
		rep.Setup = append(rep.Setup, fmt.Sprintf("(e) %s-*: (b) plus the iptables rules flatmesh's agents installed (copied from the lab hosts)", nsRefFlFW))
		paths = append(paths, d)
		pairs = append(pairs, [2]string{"a", "e"}, [2]string{"e", "b"})
	}
	if err := e.addCompare(ctx, rep, &paths, &pairs, labFlatCompare, lab.ModeFlat, "flatmesh flat bridge"); err != nil {
		return rep, err
	}
	rep.Setup = append(rep.Setup, netfilterNote(ctx, "(a) host 1", l.Hosts()[0].Netns),
		netfilterNote(ctx, "(b) host 1", topo{e: e, prefix: nsRefFlat}.host(1)))
	rep.Paths, err = e.measure(ctx, "flat", paths)
	if err != nil {
		return rep, err
	}
	rep.computeRatios(pairs, e.o.Streams)
	rep.SwitchOver, err = e.switchOverBench(ctx, l, e.o.Joins)
	return rep, err
}

// switchOverBench adds tries idle hosts one after the other; for each, a
// ping every 50 ms runs from the plain machine to the host while its agent
// starts and moves the NIC into the bridge.
func (e *env) switchOverBench(ctx context.Context, l *lab.Lab, tries int) (*SwitchOverStats, error) {
	so := &SwitchOverStats{IntervalMs: int(pingInterval / time.Millisecond)}
	var lost []float64
	for range tries {
		t, err := e.switchOverOnce(ctx, l)
		if err != nil {
			return so, fmt.Errorf("switch-over: %w", err)
		}
		e.say("switch-over %s: %d of %d pings lost, address on %s after %s", t.Host, t.Lost, t.Sent, flatBridge, ms(t.SwitchedMs))
		so.Tries = append(so.Tries, t)
		lost = append(lost, float64(t.Lost))
		so.MedianLost = median(lost)
		so.MaxLost = max(so.MaxLost, t.Lost)
	}
	return so, nil
}

func (e *env) switchOverOnce(ctx context.Context, l *lab.Lab) (SwitchOverTry, error) {
	pm, ok := l.Plain()
	if !ok {
		return SwitchOverTry{}, errors.New("the flat lab has no plain machine")
	}
	join := l.Hosts()[0].Addr().String()
	h, err := l.AddIdleHost(ctx)
	if err != nil {
		return SwitchOverTry{}, err
	}
	t := SwitchOverTry{Host: h.Name}
	p, err := startPinger(pm.Netns, h.Addr(), pingInterval)
	if err != nil {
		return t, err
	}
	stopped := false
	defer func() {
		if !stopped {
			p.stop()
		}
	}()
	if err := p.waitReplyAfter(ctx, 0, 5*time.Second); err != nil {
		return t, fmt.Errorf("%s before its agent started: %w", h.Name, err)
	}
	start := time.Now()
	if err := l.StartAgent(h.Name, "--join", join); err != nil {
		return t, err
	}
	for !hostOnBridge(ctx, h) {
		if time.Since(start) > 30*time.Second {
			return t, fmt.Errorf("%s: address not on %s within 30 s; log:\n%s", h.Name, flatBridge, l.LogTail(h.Name, 15))
		}
		if err := lab.SleepContext(ctx, 10*time.Millisecond); err != nil {
			return t, err
		}
	}
	t.SwitchedMs = msSince(start)
	if err := l.WaitReady(ctx, h.Name); err != nil {
		return t, err
	}
	// A second for the rollback check to pass or fail, then a reply sent
	// after it proves the host is reachable through the bridge.
	if err := lab.SleepContext(ctx, time.Second); err != nil {
		return t, err
	}
	if err := p.waitReplyAfter(ctx, p.lastReply(), 5*time.Second); err != nil {
		return t, fmt.Errorf("%s after the switch-over: %w", h.Name, err)
	}
	stopped = true
	t.Sent, t.Lost = p.stop()
	return t, nil
}

// hostOnBridge reports whether h's address has moved to the flat bridge.
func hostOnBridge(ctx context.Context, h lab.Host) bool {
	out, err := command(ctx, "ip", "-n", h.Netns, "-o", "-4", "addr", "show", "dev", flatBridge)
	return err == nil && strings.Contains(string(out), " "+h.Underlay.String()+" ")
}
