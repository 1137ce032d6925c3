package docker

import (
	"context"
	"net/netip"
	"strings"
	"time"
)

// In flat mode every address is ARP-probed on the LAN before use (700 ms of
// listening for a device that would answer), which alone would add that to
// every `docker run`. With Options.Spare the plugin keeps one address
// allocated and probed ahead, under a spare id, and hands it to the next
// request without --ip; a spare older than SpareMaxAge is probed again
// (released and allocated anew) so the probe is never older than that when
// a container gets the address. `--ip` still probes its own address.
// The spare is made only on a host that uses Docker: from the first
// request on, and dropped again after SpareIdle without one.

// sparePrefix marks the address held ahead for the next endpoint.
const sparePrefix = IDPrefix + "spare-"

// SpareMaxAge is the oldest probe a spare address may be handed out on.
const SpareMaxAge = 30 * time.Second

// SpareIdle is how long after Docker's last request a spare is kept.
const SpareIdle = 10 * time.Minute

// spare is the address held ahead and when its probe began.
type spare struct {
	lease Lease
	at    time.Time
}

// takeSpare hands the spare to id if it is fresh and fits want; the caller
// holds epMu.
func (p *Plugin) takeSpare(id string, want netip.Addr) (Lease, bool) {
	s := p.spare
	if !s.lease.Addr.IsValid() || time.Since(s.at) >= SpareMaxAge || (want.IsValid() && want != s.lease.Addr) {
		return Lease{}, false
	}
	if err := p.o.Backend.Rebind(s.lease.Addr, id); err != nil {
		p.log.Warn("handing out the spare address", "addr", s.lease.Addr, "error", err)
		return Lease{}, false
	}
	p.spare = spare{}
	s.lease.ID = id
	return s.lease, true
}

// kickSpare notes a request and asks the spare loop, started by the first
// request, for a new spare (non-blocking); the caller holds epMu.
func (p *Plugin) kickSpare() {
	if p.spareKick == nil {
		return
	}
	p.lastAsked = time.Now()
	if !p.spareRunning {
		p.spareRunning = true
		p.bg.Add(1)
		go p.spareLoop()
	}
	select {
	case p.spareKick <- struct{}{}:
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

// spareLoop keeps one fresh spare: it refills after every hand-out and
// refreshes on a timer.
func (p *Plugin) spareLoop() {
	defer p.bg.Done()
	t := time.NewTicker(SpareMaxAge / 3)
	defer t.Stop()
	for {
		p.refreshSpare()
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		case <-p.spareKick:
		}
	}
}

// refreshSpare replaces a missing spare, or one past half its age; the
// allocation (and its probe) runs without epMu, so endpoints go on.
func (p *Plugin) refreshSpare() {
	p.epMu.Lock()
	old := p.spare
	idle := time.Since(p.lastAsked) > SpareIdle
	if !idle && old.lease.Addr.IsValid() && time.Since(old.at) < SpareMaxAge/2 {
		p.epMu.Unlock()
		return
	}
	if old.lease.Addr.IsValid() {
		p.spare = spare{}
		if err := p.o.Backend.Release(old.lease.ID); err != nil {
			p.log.Warn("releasing a stale spare address", "addr", old.lease.Addr, "error", err)
		}
	}
	p.epMu.Unlock()
	if idle {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, callTimeout)
	defer cancel()
	start := time.Now()
	l, err := p.o.Backend.Allocate(ctx, sparePrefix+randomHex(), netip.Addr{})
	if err != nil {
		if p.ctx.Err() == nil {
			p.log.Debug("no spare address for docker", "error", err)
		}
		return
	}
	p.epMu.Lock()
	p.spare = spare{lease: l, at: start}
	p.epMu.Unlock()
}
