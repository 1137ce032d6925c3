package lab

import (
	"context"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// PingResult is one source -> destination ping of PingMesh.
type PingResult struct {
	From      string        `json:"from"` // container ("c11"), host ("h1") or "pm"
	FromNetns string        `json:"from_netns"`
	To        string        `json:"to"`
	Addr      netip.Addr    `json:"addr"`
	Sent      int           `json:"sent"`
	Received  int           `json:"received"`
	RTT       time.Duration `json:"rtt_ns"`          // average round trip
	Err       string        `json:"error,omitempty"` // ping could not run or said nothing
}

// OK reports whether any reply came back.
func (r PingResult) OK() bool { return r.Received > 0 }

const (
	pingCount    = 3
	pingParallel = 8
)

// pingPlan lists the pings of a full mesh: every container to every other
// container, every host to every container on another host, and in the flat
// variant the plain machine to every container and back.
func pingPlan(d *description) []PingResult {
	var out []PingResult
	for _, a := range d.Containers {
		for _, b := range d.Containers {
			if a.Netns != b.Netns {
				out = append(out, PingResult{From: a.Name, FromNetns: a.Netns, To: b.Name, Addr: b.IP.Addr()})
			}
		}
	}
	for _, h := range d.Hosts {
		for _, c := range d.Containers {
			if c.Host != h.Name {
				out = append(out, PingResult{From: h.Name, FromNetns: h.Netns, To: c.Name, Addr: c.IP.Addr()})
			}
		}
	}
	if pm := d.Plain; pm != nil {
		for _, c := range d.Containers {
			out = append(out,
				PingResult{From: pm.Name, FromNetns: pm.Netns, To: c.Name, Addr: c.IP.Addr()},
				PingResult{From: c.Name, FromNetns: c.Netns, To: pm.Name, Addr: pm.Addr.Addr()})
		}
	}
	return out
}

// PingMesh pings (3 echo requests each) along every pair pingPlan lists,
// several at a time, and returns the results in plan order.
func (l *Lab) PingMesh(ctx context.Context) []PingResult {
	l.mu.Lock()
	plan := pingPlan(l.d)
	l.mu.Unlock()
	sem := make(chan struct{}, pingParallel)
	var wg sync.WaitGroup
	for i := range plan {
		wg.Add(1)
		sem <- struct{}{}
		go func(r *PingResult) {
			defer wg.Done()
			defer func() { <-sem }()
			l.ping(ctx, r)
		}(&plan[i])
	}
	wg.Wait()
	return plan
}

func (l *Lab) ping(ctx context.Context, r *PingResult) {
	out, err := l.ExecContext(ctx, r.FromNetns, "ping", "-n", "-q",
		"-c", strconv.Itoa(pingCount), "-i", "0.2", "-W", "1", r.Addr.String())
	var ok bool
	r.Sent, r.Received, r.RTT, ok = parsePing(string(out))
	if !ok {
		r.Sent = pingCount
		if err != nil {
			r.Err = err.Error()
		} else {
			r.Err = "unreadable ping output"
		}
	}
}

var (
	pingCountRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	pingRTTRE   = regexp.MustCompile(`= [\d.]+/([\d.]+)/[\d.]+/[\d.]+ ms`)
)

// parsePing reads the summary of iputils (or busybox) ping: packets sent
// and received and the average round trip. ok is false when there is no
// summary.
func parsePing(out string) (sent, received int, avg time.Duration, ok bool) {
	m := pingCountRE.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, 0, false
	}
	sent, _ = strconv.Atoi(m[1])
	received, _ = strconv.Atoi(m[2])
	if r := pingRTTRE.FindStringSubmatch(out); r != nil {
		if ms, err := strconv.ParseFloat(r[1], 64); err == nil {
			avg = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return sent, received, avg, true
}
