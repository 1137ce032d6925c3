package docker

import (
	"context"
	"strings"
	"time"
)

// EndpointLister lists the endpoints dockerd knows on its flatmesh
// networks (Dockerd does, over its API).
type EndpointLister interface {
	Endpoints(ctx context.Context) (map[string]bool, error)
}

// DefaultSweepInterval is how often leases are compared with dockerd's
// endpoints. A lease is released only when two sweeps in a row find it
// orphaned, so an endpoint being made is never swept.
const DefaultSweepInterval = time.Minute

// sweepLoop releases the addresses of endpoints dockerd no longer has
// (their container was removed while the agent was down, so Docker's
// release went to a dead socket), and addresses handed out that no
// endpoint ever claimed. Nothing is swept while dockerd does not answer.
func (p *Plugin) sweepLoop(every time.Duration) {
	defer p.bg.Done()
	suspects := map[string]bool{}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		suspects = p.sweep(suspects)
	}
}

// sweep runs one comparison and returns this round's suspects.
func (p *Plugin) sweep(prev map[string]bool) map[string]bool {
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	known, err := p.o.Endpoints.Endpoints(ctx)
	if err != nil {
		p.log.Debug("not sweeping docker addresses: dockerd did not answer", "error", err)
		return prev
	}
	p.epMu.Lock()
	defer p.epMu.Unlock()
	now := map[string]bool{}
	for _, l := range p.o.Backend.Leases() {
		if strings.HasPrefix(l.ID, sparePrefix) {
			continue // the spare loop's own (spare.go)
		}
		ep := strings.TrimPrefix(strings.TrimPrefix(l.ID, pendingPrefix), IDPrefix)
		if known[ep] || p.o.Backend.Plugged(l.ID) {
			continue
		}
		if !prev[l.ID] {
			now[l.ID] = true
			continue
		}
		if err := p.o.Backend.Release(l.ID); err != nil {
			p.log.Warn("releasing an orphaned docker address", "addr", l.Addr, "id", l.ID, "error", err)
			now[l.ID] = true
			continue
		}
		p.log.Info("released the address of an endpoint dockerd no longer has", "addr", l.Addr, "id", l.ID)
	}
	return now
}
