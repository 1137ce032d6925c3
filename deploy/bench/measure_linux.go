package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

const iperfPort = "5201"

// benchPath is one data path: an iperf3 client in one namespace sending to
// a server in another.
type benchPath struct {
	Key, Name, Label string
	Client, Server   string     // namespaces
	Addr             netip.Addr // the server's address
	// Procs, when set, are the processes that carry the path (the two
	// tunnel ends); their CPU per Gbit/s is reported. CPUOf names them.
	Procs []int
	CPUOf string
}

// iperfServer is `iperf3 -s` running in a namespace.
type iperfServer struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startIperfServer starts a server in ns and returns once it listens.
func startIperfServer(ctx context.Context, ns string) (*iperfServer, error) {
	cmd := exec.Command("ip", "netns", "exec", ns, "iperf3", "-s", "-p", iperfPort, "--forceflush")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting iperf3 server in %s: %w", ns, err)
	}
	s := &iperfServer{cmd: cmd, done: make(chan struct{})}
	listening := make(chan struct{})
	var head strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		seen := false
		for sc.Scan() {
			if !seen {
				head.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "Server listening") {
					seen = true
					close(listening)
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case <-listening:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("iperf3 server in %s exited: %s", ns, strings.TrimSpace(head.String()))
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, fmt.Errorf("iperf3 server in %s did not listen within 10 s", ns)
	}
}

func (s *iperfServer) stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// iperf runs one client: streams parallel TCP streams for the configured
// duration. A busy or not-yet-ready server gets one more try.
func (e *env) iperf(ctx context.Context, p benchPath, streams int) (iperfResult, error) {
	secs := strconv.Itoa(e.o.durationSeconds())
	var lastErr error
	for try := 0; try < 2; try++ {
		if try > 0 {
			if err := lab.SleepContext(ctx, 500*time.Millisecond); err != nil {
				return iperfResult{}, err
			}
		}
		rctx, cancel := context.WithTimeout(ctx, time.Duration(e.o.durationSeconds()+20)*time.Second)
		out, err := nsExec(rctx, p.Client, "iperf3", "-c", p.Addr.String(), "-p", iperfPort,
			"-t", secs, "-P", strconv.Itoa(streams), "-J")
		cancel()
		r, perr := parseIperf(out)
		if perr == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		lastErr = perr
		if err != nil && !strings.Contains(string(out), "{") {
			lastErr = err // iperf3 did not even start
		}
	}
	return iperfResult{}, fmt.Errorf("(%s) %s: %w", p.Key, p.Label, lastErr)
}

// pingRTT returns the average round trip of 20 pings 10 ms apart, in ms.
func pingRTT(ctx context.Context, p benchPath, count int, interval string) (float64, error) {
	out, err := nsExec(ctx, p.Client, "ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", interval, "-W", "1", p.Addr.String())
	s, perr := parsePingSummary(string(out))
	if perr != nil {
		return 0, fmt.Errorf("(%s) %s: ping %s: %w", p.Key, p.Label, p.Addr, errors.Join(err, perr))
	}
	if s.Received == 0 {
		return 0, fmt.Errorf("(%s) %s: no reply from %s in %s", p.Key, p.Label, p.Addr, p.Client)
	}
	return s.AvgMs, nil
}

// measure runs every path's throughput (each stream count) and latency,
// interleaved: in each repetition every stream count runs a, b, c... in
// turn, then each path's ping. It fails on the first path that does not
// work (after one retry), naming it.
func (e *env) measure(ctx context.Context, suite string, paths []benchPath) ([]PathResult, error) {
	for _, p := range paths { // reachability, and ARP/neighbour entries warm
		if _, err := pingRTT(ctx, p, 3, "0.05"); err != nil {
			return nil, fmt.Errorf("path check: %w", err)
		}
	}
	servers := map[string]*iperfServer{}
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, p := range paths {
		if servers[p.Server] == nil {
			s, err := startIperfServer(ctx, p.Server)
			if err != nil {
				return nil, err
			}
			servers[p.Server] = s
		}
	}
	acc := make([]pathSamples, len(paths))
	for i := range acc {
		acc[i] = pathSamples{gbps: map[int][]float64{}, retr: map[int][]int{}, cores: map[int][]float64{}}
	}
	total, k := e.o.Repeat*len(e.o.Streams)*len(paths), 0
	for rep := 1; rep <= e.o.Repeat; rep++ {
		for _, n := range e.o.Streams {
			for i, p := range paths {
				k++
				cpu0, t0, cpuErr := procCPUNow(p.Procs)
				r, err := e.iperf(ctx, p, n)
				if err != nil {
					return nil, err
				}
				if cores, ok := coresSince(p.Procs, cpu0, t0, cpuErr); ok && r.Gbps > 0 {
					acc[i].cores[n] = append(acc[i].cores[n], cores/r.Gbps)
				}
				acc[i].gbps[n] = append(acc[i].gbps[n], r.Gbps)
				acc[i].retr[n] = append(acc[i].retr[n], r.Retransmits)
				e.say("%s %2d/%d  rep %d  (%s) %-24s %s: %6.2f Gbit/s  %5d retransmits", suite, k, total, rep,
					p.Key, p.Label, streamsLabel(n), r.Gbps, r.Retransmits)
			}
		}
		for i, p := range paths {
			rtt, err := pingRTT(ctx, p, 20, "0.01")
			if err != nil {
				return nil, err
			}
			acc[i].rtt = append(acc[i].rtt, rtt)
			e.say("%s rtt     rep %d  (%s) %-24s %.3f ms", suite, rep, p.Key, p.Label, rtt)
		}
	}
	res := make([]PathResult, len(paths))
	for i, p := range paths {
		res[i] = PathResult{Key: p.Key, Name: p.Name, Label: p.Label, CPUOf: p.CPUOf, RTT: newSeries(acc[i].rtt)}
		for _, n := range e.o.Streams {
			tp := Throughput{Streams: n, Gbps: newSeries(acc[i].gbps[n]), Retransmits: acc[i].retr[n]}
			if c := acc[i].cores[n]; len(c) > 0 {
				s := newSeries(c)
				tp.CoresPerGbps = &s
			}
			res[i].Throughput = append(res[i].Throughput, tp)
		}
	}
	if err := e.profilePaths(ctx, suite, paths); err != nil {
		return res, err
	}
	return res, nil
}

// pathSamples collects one path's runs: Gbit/s and retransmits per stream
// count, and round trips.
type pathSamples struct {
	gbps  map[int][]float64
	retr  map[int][]int
	cores map[int][]float64 // cores busy per Gbit/s, when the path names its processes
	rtt   []float64
}

// pinger is a ping running every interval from one namespace to an address,
// keeping the sequence numbers answered.
type pinger struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	replied map[int]bool
	maxSeq  int
	done    chan struct{}
}

func startPinger(ns string, addr netip.Addr, interval time.Duration) (*pinger, error) {
	cmd := exec.Command("ip", "netns", "exec", ns, "ping", "-n", "-W", "1",
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), addr.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting ping in %s: %w", ns, err)
	}
	p := &pinger{cmd: cmd, replied: map[int]bool{}, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if seq, ok := replySeq(sc.Text()); ok {
				p.mu.Lock()
				p.replied[seq] = true
				p.maxSeq = max(p.maxSeq, seq)
				p.mu.Unlock()
			}
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// lastReply is the highest sequence number answered so far (0: none).
func (p *pinger) lastReply() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxSeq
}

// waitReplyAfter waits for a reply to a request numbered above seq.
func (p *pinger) waitReplyAfter(ctx context.Context, seq int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for p.lastReply() <= seq {
		if time.Now().After(deadline) {
			return fmt.Errorf("no ping reply within %s", timeout)
		}
		if err := lab.SleepContext(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// stop ends ping and returns the requests sent up to the last reply and
// how many of them got none.
func (p *pinger) stop() (sent, lost int) {
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return pingLosses(p.replied)
}
