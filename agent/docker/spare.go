package docker

import (
	"context"
	"net/netip"
	"strings"
	"time"
)

// In flat mode every address is ARP-probed on the LAN before use (700 ms of
// listening for a device that would answer), which alone would add that to
// every `docker run`. With Options.Spare the plugin keeps a few addresses
// allocated and probed ahead, under spare ids, and hands one to the next
// request without --ip (a request that finds none ready waits for a probe
// already under way rather than starting its own). A spare past half of
// SpareMaxAge is probed again (released and allocated anew), so no probe is
// older than SpareMaxAge when a container gets the address. `--ip` still
// probes its own address. Spares are made only on a host that uses Docker:
// from the first request on, and dropped after SpareIdle without one.

// sparePrefix marks an address held ahead for a coming endpoint.
const sparePrefix = IDPrefix + "spare-"

const (
	// SpareMaxAge is the oldest probe a spare address may be handed out on.
	SpareMaxAge = 30 * time.Second
	// SpareIdle is how long after Docker's last request spares are kept.
	SpareIdle = 10 * time.Minute
	// spareCount spares cover back-to-back runs (a run and its removal take
	// less than one probe).
	spareCount = 2
)

// spare is an address held ahead and when its probe began.
type spare struct {
	lease Lease
	at    time.Time
}

// spares is the pool, under Plugin.epMu.
type spares struct {
	kick      chan struct{} // nil without Options.Spare
	held      []spare
	inflight  int
	ready     chan struct{} // closed when a refill ends
	lastAsked time.Time
	running   bool
}

// takeSpare hands a fresh spare that fits want to id; with --ip of a stale
// spare it releases that spare (released) for a new probe. The caller holds
// epMu.
func (p *Plugin) takeSpare(id string, want netip.Addr) (l Lease, ok, released bool) {
	for i, s := range p.sp.held {
		if want.IsValid() && want != s.lease.Addr {
			continue
		}
		stale := time.Since(s.at) >= SpareMaxAge
		if stale && !want.IsValid() {
			continue
		}
		if stale {
			p.sp.held = append(p.sp.held[:i], p.sp.held[i+1:]...)
			if err := p.o.Backend.Release(s.lease.ID); err != nil {
				p.log.Warn("releasing a stale spare address", "addr", s.lease.Addr, "error", err)
			}
			return Lease{}, false, true
		}
		if err := p.o.Backend.Rebind(s.lease.Addr, id); err != nil {
			p.log.Warn("handing out a spare address", "addr", s.lease.Addr, "error", err)
			continue
		}
		p.sp.held = append(p.sp.held[:i], p.sp.held[i+1:]...)
		s.lease.ID = id
		return s.lease, true, false
	}
	return Lease{}, false, false
}

// spareFor is takeSpare waiting (epMu not held) for refills under way when
// no spare fits: without --ip, for a few; with --ip, while one holds the
// address or (after a stale spare was released) might take it. It notes
// the request and wakes the spare loop, which the first request starts.
func (p *Plugin) spareFor(ctx context.Context, id string, want netip.Addr) (Lease, bool) {
	if p.sp.kick == nil {
		return Lease{}, false
	}
	p.epMu.Lock()
	defer p.epMu.Unlock()
	defer p.kickSpare()
	released := false
	for waits := 0; ; waits++ {
		l, ok, rel := p.takeSpare(id, want)
		released = released || rel
		if ok || p.sp.inflight == 0 || ctx.Err() != nil || (!want.IsValid() && waits >= spareCount) {
			return l, ok
		}
		if want.IsValid() && !released && !p.heldBySpare(want) {
			return Lease{}, false
		}
		ready := p.sp.ready
		p.epMu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
		}
		p.epMu.Lock()
	}
}

// heldBySpare reports whether a (valid) is held by a spare, in the pool or
// being probed.
func (p *Plugin) heldBySpare(a netip.Addr) bool {
	if !a.IsValid() || p.sp.kick == nil {
		return false
	}
	h, held := p.o.Backend.Holder(a)
	return held && strings.HasPrefix(h.ID, sparePrefix)
}

// kickSpare notes a request and wakes the spare loop (non-blocking); the
// caller holds epMu.
func (p *Plugin) kickSpare() {
	p.sp.lastAsked = time.Now()
	if !p.sp.running {
		p.sp.running = true
		p.bg.Add(1)
		go p.spareLoop()
	}
	select {
	case p.sp.kick <- struct{}{}:
	default:
	}
}

// dropEarlierSpares releases spares an earlier agent left (Start).
func (p *Plugin) dropEarlierSpares() {
	p.epMu.Lock()
	defer p.epMu.Unlock()
	for _, l := range p.o.Backend.Leases() {
		if strings.HasPrefix(l.ID, sparePrefix) {
			if err := p.o.Backend.Release(l.ID); err != nil {
				p.log.Warn("releasing an earlier spare address", "addr", l.Addr, "error", err)
			}
		}
	}
}

// spareLoop keeps the pool: it refills after every hand-out and refreshes
// on a timer.
func (p *Plugin) spareLoop() {
	defer p.bg.Done()
	t := time.NewTicker(SpareMaxAge / 3)
	defer t.Stop()
	for {
		p.refreshSpares()
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		case <-p.sp.kick:
		}
	}
}

// refreshSpares releases spares past half their age (all of them when
// idle) and starts refills up to spareCount.
func (p *Plugin) refreshSpares() {
	p.epMu.Lock()
	defer p.epMu.Unlock()
	idle := time.Since(p.sp.lastAsked) > SpareIdle
	keep := p.sp.held[:0]
	for _, s := range p.sp.held {
		if !idle && time.Since(s.at) < SpareMaxAge/2 {
			keep = append(keep, s)
			continue
		}
		if err := p.o.Backend.Release(s.lease.ID); err != nil {
			p.log.Warn("releasing a stale spare address", "addr", s.lease.Addr, "error", err)
		}
	}
	p.sp.held = keep
	for !idle && len(p.sp.held)+p.sp.inflight < spareCount {
		p.sp.inflight++
		p.bg.Add(1)
		go p.refill()
	}
}

// refill allocates (and so probes) one spare without epMu.
func (p *Plugin) refill() {
	defer p.bg.Done()
	ctx, cancel := context.WithTimeout(p.ctx, callTimeout)
	defer cancel()
	start := time.Now()
	l, err := p.o.Backend.Allocate(ctx, sparePrefix+randomHex(), netip.Addr{})
	if err != nil && p.ctx.Err() == nil {
		p.log.Debug("no spare address for docker", "error", err)
	}
	p.epMu.Lock()
	defer p.epMu.Unlock()
	if err == nil {
		p.sp.held = append(p.sp.held, spare{lease: l, at: start})
	}
	p.sp.inflight--
	close(p.sp.ready)
	p.sp.ready = make(chan struct{})
}
