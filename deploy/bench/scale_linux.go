package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kernel"
)

const (
	labScale      = "fbs"
	scaleStartGap = 100 * time.Millisecond // as a new user starts them
	scaleConverge = 3 * time.Minute
	scaleStable   = 20 * time.Second
	scaleIdle     = 10 * time.Second
	// scaleIdleSettle is the wait between the last attach and the idle
	// window: at 50 hosts memberlist is still relaying the attach phase's
	// metadata updates for a while (5 s read ~20 KB/s per host, against
	// ~2-5 KB/s a minute later), and the window is meant to show an idle
	// agent, not that tail.
	scaleIdleSettle = 30 * time.Second
	scaleRouteWait  = 30 * time.Second
	scaleWithdraw   = 90 * time.Second
	clockTicks      = 100 // USER_HZ on Linux
)

// scaleHost is one host of the scale lab with what the bench reads from it.
type scaleHost struct {
	h   lab.Host
	api *api.Client
	ns  *kernel.NS
}

// scaleSuite runs the scale lab: agents started scaleStartGap apart with
// LAN gossip timing, then one container per host, idle figures, and a
// SIGKILLed host's routes withdrawn.
func (e *env) scaleSuite(ctx context.Context) (*ScaleReport, error) {
	n := e.o.Scale
	rep := &ScaleReport{Hosts: n, StartGapMs: float64(scaleStartGap / time.Millisecond),
		StableWindowS: scaleStable.Seconds(), IdleWindowS: scaleIdle.Seconds()}
	restore, note, err := raiseNeighLimits(n)
	defer restore()
	if err != nil {
		return rep, err
	}
	if note != "" {
		e.say("%s", note)
		rep.Notes = append(rep.Notes, note)
	}
	e.say("bringing up lab %s: %d hosts, LAN gossip timing", labScale, n)
	l, err := lab.Up(ctx, lab.Options{Name: labScale, Hosts: 1, ContainersPerHost: lab.NoContainers,
		GossipTiming: "lan", Binary: e.o.Binary, Timeout: scaleConverge, ExtraAgentArgs: e.o.AgentArgs})
	if err != nil {
		return rep, fmt.Errorf("lab %s: %w", labScale, err)
	}
	e.mu.Lock()
	e.labs = append(e.labs, l)
	e.mu.Unlock()
	for i := 2; i <= n; i++ {
		if _, err := l.AddIdleHost(ctx); err != nil {
			return rep, err
		}
	}
	hosts, err := openScaleHosts(l)
	defer func() {
		for _, h := range hosts {
			h.ns.Close()
		}
	}()
	if err != nil {
		return rep, err
	}
	if err := e.scaleConverge(ctx, l, hosts, rep); err != nil {
		return rep, err
	}
	if err := e.scaleJoins(ctx, l, hosts, rep); err != nil {
		return rep, err
	}
	if err := e.scaleIdle(ctx, l, hosts, rep); err != nil {
		return rep, err
	}
	err = e.scaleKill(ctx, l, hosts, rep)
	rep.LoadAverage1 = loadAverage()
	return rep, err
}

func openScaleHosts(l *lab.Lab) ([]scaleHost, error) {
	var out []scaleHost
	for _, h := range l.Hosts() {
		ns, err := kernel.OpenNS(lab.NetnsPath(h.Netns))
		if err != nil {
			return out, err
		}
		out = append(out, scaleHost{h: h, api: api.NewClient(h.Socket), ns: ns})
	}
	return out, nil
}

// alive asks a host's agent how many members it sees alive (-1: no answer).
func (s scaleHost) alive(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var st api.Status
	if err := s.api.Do(ctx, "GET", "/status", nil, &st); err != nil {
		return -1
	}
	return st.Alive
}

// scaleConverge starts every agent but the first (already up) with the
// start gap, joining the first, and times until each sees all alive; then
// watches for flaps.
func (e *env) scaleConverge(ctx context.Context, l *lab.Lab, hosts []scaleHost, rep *ScaleReport) error {
	n := len(hosts)
	join := hosts[0].h.Addr().String()
	e.say("starting %d agents %s apart, joining %s", n-1, scaleStartGap, join)
	start := time.Now()
	startErr := make(chan error, 1)
	go func() {
		var err error
		for _, h := range hosts[1:] {
			if err = l.StartAgent(h.h.Name, "--join", join); err != nil {
				break
			}
			if err = lab.SleepContext(ctx, scaleStartGap); err != nil {
				break
			}
		}
		startErr <- err
	}()
	rep.PerHostMs = make([]float64, n)
	seen := make([]int, n) // last answer per host, for the error
	left := n
	for left > 0 {
		if time.Since(start) > scaleConverge {
			return fmt.Errorf("%d of %d hosts did not see all %d alive within %s (alive counts they last answered, -1 = no answer: %v)",
				left, n, n, scaleConverge, seen)
		}
		for i, h := range hosts {
			if rep.PerHostMs[i] != 0 {
				continue
			}
			if seen[i] = h.alive(ctx); seen[i] == n {
				rep.PerHostMs[i] = msSince(start)
				left--
			}
		}
		if err := lab.SleepContext(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	if err := <-startErr; err != nil {
		return err
	}
	for _, v := range rep.PerHostMs {
		rep.AllSeeAllMs = max(rep.AllSeeAllMs, v)
	}
	e.say("all %d hosts see all alive after %s; watching %s for flaps", n, ms(rep.AllSeeAllMs), scaleStable)
	for end := time.Now().Add(scaleStable); time.Now().Before(end); {
		for _, h := range hosts {
			if a := h.alive(ctx); a != n {
				rep.Flaps++
				e.say("flap: %s sees %d alive", h.h.Name, a)
			}
		}
		if err := lab.SleepContext(ctx, time.Second); err != nil {
			return err
		}
	}
	var cpu []float64
	for _, h := range l.Hosts() {
		ticks, err := cpuTicks(h.PID)
		if err != nil {
			return fmt.Errorf("storm cpu of %s: %w", h.Name, err)
		}
		cpu = append(cpu, ticks*1000/clockTicks)
	}
	rep.StormCPUMs = newSpread(cpu)
	return nil
}

// cpuTicks is a process's user+system time in clock ticks, with that of
// its children it waited for (the agent's iptables runs).
func cpuTicks(pid int) (float64, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at 3.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(f) < 15 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var sum float64
	for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
		v, _ := strconv.ParseFloat(f[i], 64)
		sum += v
	}
	return sum, nil
}

// covers reports whether a proto-95 route in ns covers addr.
func covers(ns *kernel.NS, addr netip.Addr) bool {
	rs, err := ns.H.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: kernel.RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return false
	}
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if a, ok := netip.AddrFromSlice(r.Dst.IP); ok && netip.PrefixFrom(a.Unmap(), ones).Contains(addr) {
			return true
		}
	}
	return false
}

// everywhere reports whether covers(addr) is want on every host but skip.
func everywhere(hosts []scaleHost, skip int, addr netip.Addr, want bool) bool {
	for i, h := range hosts {
		if i != skip && covers(h.ns, addr) != want {
			return false
		}
	}
	return true
}

// scaleJoins attaches one container on each host in turn and times until
// every other host routes to it; a container on the previous host pings it
// once as soon as attach answers.
func (e *env) scaleJoins(ctx context.Context, l *lab.Lab, hosts []scaleHost, rep *ScaleReport) error {
	var samples, answered []float64
	failed := 0
	var prev *lab.Container
	var errs []error
	for i, h := range hosts {
		t0 := time.Now()
		c, err := l.AddContainer(ctx, h.h.Name)
		if err != nil {
			failed++
			errs = append(errs, err)
			continue
		}
		answered = append(answered, msSince(t0))
		var wg sync.WaitGroup
		if prev != nil {
			wg.Add(1)
			go func(from string) {
				defer wg.Done()
				if _, err := nsExec(ctx, from, "ping", "-c1", "-W1", c.IP.Addr().String()); err != nil {
					rep.FirstPingLost++
				}
			}(prev.Netns)
		}
		for !everywhere(hosts, i, c.IP.Addr(), true) {
			if time.Since(t0) > scaleRouteWait {
				failed++
				errs = append(errs, fmt.Errorf("%s's container %s: not routed everywhere within %s", h.h.Name, c.IP, scaleRouteWait))
				break
			}
			if err := lab.SleepContext(ctx, 5*time.Millisecond); err != nil {
				return err
			}
		}
		if time.Since(t0) <= scaleRouteWait {
			samples = append(samples, msSince(t0))
		}
		wg.Wait()
		prev = &c
	}
	rep.JoinRoutes = newLatency(samples, failed)
	rep.AttachAnswered = newLatency(answered, 0)
	e.say("first block -> routes everywhere: p50 %s p99 %s (%d failed), first ping lost %d times",
		ms(rep.JoinRoutes.P50), ms(rep.JoinRoutes.P99), failed, rep.FirstPingLost)
	if len(errs) > 0 {
		return fmt.Errorf("joins: %w", errors.Join(errs...))
	}
	return nil
}

// sample is one reading of an agent process and its host's eth0.
type sample struct {
	cpuTicks, rssKB float64
	tx, rx          float64
}

func readSample(h scaleHost, pid int) (sample, error) {
	var s sample
	var err error
	if s.cpuTicks, err = cpuTicks(pid); err != nil {
		return s, err
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKB, _ = strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		}
	}
	link, err := h.ns.H.LinkByName("eth0")
	if err != nil {
		return s, err
	}
	if st := link.Attrs().Statistics; st != nil {
		s.tx, s.rx = float64(st.TxBytes), float64(st.RxBytes)
	}
	return s, nil
}

// scaleIdle reads every agent's CPU, RSS and gossip traffic over the idle
// window.
func (e *env) scaleIdle(ctx context.Context, l *lab.Lab, hosts []scaleHost, rep *ScaleReport) error {
	e.say("idle: settling %s, then measuring %s", scaleIdleSettle, scaleIdle)
	if err := lab.SleepContext(ctx, scaleIdleSettle); err != nil {
		return err
	}
	pids := map[string]int{}
	for _, h := range l.Hosts() {
		pids[h.Name] = h.PID
	}
	before := make([]sample, len(hosts))
	for i, h := range hosts {
		var err error
		if before[i], err = readSample(h, pids[h.h.Name]); err != nil {
			return fmt.Errorf("idle %s: %w", h.h.Name, err)
		}
	}
	t0 := time.Now()
	if err := lab.SleepContext(ctx, scaleIdle); err != nil {
		return err
	}
	secs := time.Since(t0).Seconds()
	var rss, cpu, tx, rx []float64
	for i, h := range hosts {
		after, err := readSample(h, pids[h.h.Name])
		if err != nil {
			return fmt.Errorf("idle %s: %w", h.h.Name, err)
		}
		rss = append(rss, after.rssKB/1024)
		cpu = append(cpu, 100*(after.cpuTicks-before[i].cpuTicks)/clockTicks/secs)
		tx = append(tx, (after.tx-before[i].tx)/secs)
		rx = append(rx, (after.rx-before[i].rx)/secs)
	}
	rep.RSSMB, rep.CPUPercent, rep.TxBytesPerS, rep.RxBytesPerS = newSpread(rss), newSpread(cpu), newSpread(tx), newSpread(rx)
	e.say("idle: rss median %.1f MB, cpu median %.2f%%, gossip sent median %.0f B/s", rep.RSSMB.Median, rep.CPUPercent.Median, rep.TxBytesPerS.Median)
	return nil
}

// scaleKill SIGKILLs the last host's agent and times until no other host
// routes to its container.
func (e *env) scaleKill(ctx context.Context, l *lab.Lab, hosts []scaleHost, rep *ScaleReport) error {
	victim := len(hosts) - 1
	name := hosts[victim].h.Name
	var addr netip.Addr
	for _, c := range l.Containers() {
		if c.Host == name {
			addr = c.IP.Addr()
		}
	}
	if !addr.IsValid() {
		return fmt.Errorf("kill: %s has no container", name)
	}
	rep.KilledHost = name
	t0 := time.Now()
	if err := l.Signal(name, syscall.SIGKILL); err != nil {
		return err
	}
	for !everywhere(hosts, victim, addr, false) {
		if time.Since(t0) > scaleWithdraw {
			return fmt.Errorf("kill: %s's routes (%s) still present somewhere after %s", name, addr, scaleWithdraw)
		}
		if err := lab.SleepContext(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	rep.WithdrawnMs = msSince(t0)
	e.say("SIGKILL %s: its routes gone everywhere after %s", name, ms(rep.WithdrawnMs))
	return nil
}

func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
