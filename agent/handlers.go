package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/cluster"
)

// routes builds the API. Every handler is safe to run concurrently, and
// every request ends when the agent shuts down (withLife).
func (a *Agent) routes() *api.Mux {
	m := api.NewMux(a.log.Named("api"))
	handle := func(method, path string, h api.Handler) { m.Handle(method, path, a.withLife(h)) }
	handle("GET", "/status", a.handleStatus)
	handle("GET", "/peers", a.handlePeers)
	handle("POST", "/join", a.handleJoin)
	handle("POST", "/leave", a.handleLeave)
	handle("POST", "/attach", a.timed("attach", a.handleAttach))
	handle("POST", "/detach", a.timed("detach", a.handleDetach))
	handle("GET", "/containers", a.handleContainers)
	handle("GET", "/ipam", a.handleIPAM)
	handle("GET", "/ipam/check", a.handleIPAMCheck)
	handle("POST", "/ipam/rmpeer", a.handleRmpeer)
	handle("POST", "/flat/restore", a.handleFlatRestore)
	a.cniRoutes(handle)
	handle("POST", "/wg/rotate", a.handleWGRotate)
	a.pprofRoutes(m)
	return m
}

// withLife gives h a request context that also ends when the agent starts
// shutting down, so an attach waiting for a block or a probe returns at
// once instead of holding the shutdown up.
func (a *Agent) withLife(h api.Handler) api.Handler {
	return func(r *http.Request) (any, error) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(a.life, cancel)()
		return h(r.WithContext(ctx))
	}
}

func (a *Agent) handleStatus(r *http.Request) (any, error) {
	members := a.cl.Members()
	alive := 0
	for _, p := range members {
		if p.State == cluster.StateAlive {
			alive++
		}
	}
	// Count only: entering every container's namespace for its MAC is
	// what `containers` does, not status.
	conts, _, _ := a.attached(r.Context())
	st := api.Status{
		Name:        a.cfg.Name,
		Cluster:     a.cfg.Cluster,
		Mode:        a.cfg.Mode,
		Alive:       alive,
		Members:     len(members),
		Underlay:    a.cfg.Advertise.Addr().String(),
		Port:        int(a.cfg.Advertise.Port()),
		Version:     a.version,
		Uptime:      time.Since(a.started).Round(time.Second).String(),
		Containers:  len(conts),
		Encrypted:   a.cfg.KeyFile != "",
		Fingerprint: fmt.Sprintf("%016x", a.cfg.Fingerprint()),
		CIDR:        a.cfg.IPAMPrefix().String(),
		MTU:         a.plane.MTU(),
		Bridge:      a.cfg.Bridge,
		Blocks:      len(a.ipam.OwnedBlocks(a.cfg.Name)),
		DNS:         a.dnsStatus(),
	}
	a.passStatus(&st, time.Now())
	if d, ok := a.plane.(driftReporter); ok {
		st.Drift = d.Drift()
	}
	st.WGDevice = wgBackend(a.plane)
	return st, nil
}

func (a *Agent) handlePeers(r *http.Request) (any, error) {
	members := a.cl.Members()
	out := make([]api.Peer, 0, len(members))
	for _, p := range members {
		out = append(out, api.Peer{
			Name:     p.Name,
			Addr:     p.Addr.String(),
			Port:     int(p.Port),
			State:    string(p.State),
			Mode:     p.Meta.Mode,
			Cluster:  p.Meta.Cluster,
			Underlay: p.Meta.Underlay.String(),
			Self:     p.Name == a.cfg.Name,
		})
	}
	a.addWGStats(out, members)
	return out, nil
}

func (a *Agent) handleJoin(r *http.Request) (any, error) {
	var req api.JoinRequest
	if err := api.Decode(r, &req); err != nil {
		return nil, err
	}
	if err := api.ValidateJoin(req.Addrs); err != nil {
		return nil, api.BadRequest(err)
	}
	addrs := make([]string, 0, len(req.Addrs))
	for _, s := range req.Addrs {
		ap, err := ParseHostPort(s, DefaultPort)
		if err != nil {
			return nil, api.BadRequest(fmt.Errorf("bad address %q: %w", s, err))
		}
		addrs = append(addrs, ap.String())
	}
	n, err := a.cl.Join(addrs)
	if err != nil {
		return nil, &api.StatusError{Code: http.StatusConflict, Err: err}
	}
	a.poke()
	return api.JoinResponse{Joined: n}, nil
}

func (a *Agent) handleLeave(r *http.Request) (any, error) {
	var req api.LeaveRequest
	if err := api.Decode(r, &req); err != nil {
		return nil, err
	}
	if req.Restore && !a.plane.Capabilities().Restore {
		return nil, api.BadRequest(errors.New("--restore is for flat mode; this agent runs " + a.cfg.Mode))
	}
	select {
	case a.leave <- req:
	default:
		return nil, &api.StatusError{Code: http.StatusConflict, Err: errors.New("the agent is already leaving")}
	}
	return map[string]any{"leaving": true, "purge": req.Purge, "restore": req.Restore}, nil
}

func (a *Agent) handleFlatRestore(r *http.Request) (any, error) {
	if !a.plane.Capabilities().Restore {
		return nil, api.BadRequest(errors.New("flat restore is for flat mode; this agent runs " + a.cfg.Mode))
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	defer a.lockKernel()()
	if err := a.plane.Restore(ctx); err != nil {
		return nil, err
	}
	return map[string]any{"restored": true}, nil
}
