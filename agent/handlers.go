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

// routes builds the API. Every handler is safe to run concurrently.
func (a *Agent) routes() *api.Mux {
	m := api.NewMux(a.log.Named("api"))
	m.Handle("GET", "/status", a.handleStatus)
	m.Handle("GET", "/peers", a.handlePeers)
	m.Handle("POST", "/join", a.handleJoin)
	m.Handle("POST", "/leave", a.handleLeave)
	m.Handle("POST", "/attach", a.handleAttach)
	m.Handle("POST", "/detach", a.handleDetach)
	m.Handle("GET", "/containers", a.handleContainers)
	m.Handle("GET", "/ipam", a.handleIPAM)
	m.Handle("GET", "/ipam/check", a.handleIPAMCheck)
	m.Handle("POST", "/ipam/rmpeer", a.handleRmpeer)
	m.Handle("POST", "/flat/restore", a.handleFlatRestore)
	return m
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
	}
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
	if req.Restore && a.cfg.Mode != "flat" {
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
	if a.cfg.Mode != "flat" {
		return nil, api.BadRequest(errors.New("flat restore is for flat mode; this agent runs " + a.cfg.Mode))
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	if err := a.plane.Restore(ctx); err != nil {
		return nil, err
	}
	return map[string]any{"restored": true}, nil
}
