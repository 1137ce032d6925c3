package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/docker/go-plugins-helpers/sdk"
	"github.com/hashicorp/go-hclog"
)

// Name is the plugin's name: `docker network create -d flatmesh
// --ipam-driver flatmesh`, and the socket flatmesh.sock.
const Name = "flatmesh"

// manifest says this one socket implements both drivers.
const manifest = `{"Implements": ["NetworkDriver", "IpamDriver"]}`

// callTimeout bounds one call from Docker (an allocation may wait for a
// block from a peer).
const callTimeout = 25 * time.Second

// Options are the inputs of New.
type Options struct {
	Dir     string  // plugin directory; the socket is Dir/flatmesh.sock
	Backend Backend // the agent
	Logger  hclog.Logger
	// Names looks up the container name of an endpoint after Join (the
	// driver protocol never says it); nil leaves leases unnamed.
	Names NameSource
	// Endpoints lets the plugin release addresses whose endpoint dockerd no
	// longer has; nil: no sweep.
	Endpoints     EndpointLister
	SweepInterval time.Duration // default DefaultSweepInterval
	// Observe, if set, is told how long each call from Docker took: call is
	// the protocol's name ("NetworkDriver.Join"), failed whether Docker got
	// an error. It runs on the call's goroutine and must be quick.
	Observe func(call string, took time.Duration, failed bool)
	// Spare keeps one address allocated (and probed) ahead for the next
	// endpoint: for modes whose allocation probes the LAN (spare.go).
	Spare bool
}

// NameSource finds the container behind an endpoint, for listings.
type NameSource interface {
	EndpointName(ctx context.Context, networkID, endpointID string) (string, error)
}

// Plugin is the served plugin. Calls about one endpoint are serialised by
// epMu; calls about different endpoints run concurrently.
type Plugin struct {
	o     Options
	log   hclog.Logger
	space Space

	mu sync.Mutex
	ln net.Listener

	epMu sync.Mutex // serialises endpoint and address changes
	sp   spares     // under epMu (spare.go)

	bg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// New checks the options; nothing is created until Start.
func New(o Options) (*Plugin, error) {
	if o.Backend == nil {
		return nil, errors.New("docker plugin: no backend")
	}
	if o.Dir == "" || !filepath.IsAbs(o.Dir) {
		return nil, fmt.Errorf("docker plugin: directory %q must be an absolute path", o.Dir)
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Plugin{o: o, log: o.Logger, space: o.Backend.Space(), ctx: ctx, cancel: cancel}, nil
}

// Socket is the socket's path.
func (p *Plugin) Socket() string { return filepath.Join(p.o.Dir, Name+".sock") }

// Start listens on the socket (replacing a stale one a killed agent left)
// and serves in the background until Close.
func (p *Plugin) Start() error {
	if err := os.MkdirAll(p.o.Dir, 0o755); err != nil {
		return fmt.Errorf("creating docker plugin dir: %w", err)
	}
	path := p.Socket()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("securing %s: %w", path, err)
	}
	h := sdk.NewHandler(manifest)
	p.routes(h)
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		// sdk.Handler serves only through Serve(listener); closing the
		// listener ends it.
		if err := h.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
			p.log.Error("docker plugin stopped", "error", err)
		}
	}()
	if p.o.Endpoints != nil {
		every := p.o.SweepInterval
		if every <= 0 {
			every = DefaultSweepInterval
		}
		p.bg.Add(1)
		go p.sweepLoop(every)
	}
	if p.o.Spare {
		p.sp.kick, p.sp.ready = make(chan struct{}, 1), make(chan struct{})
		p.dropEarlierSpares()
	}
	p.log.Info("serving the docker network and IPAM plugin", "socket", path, "subnet", p.space.Subnet, "range", p.space.Range)
	return nil
}

// Close stops serving and removes the socket, so Docker says at once that
// the plugin is missing rather than waiting for it. Endpoints stay.
func (p *Plugin) Close() error {
	p.cancel()
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	p.mu.Unlock()
	var err error
	if ln != nil {
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
		if rerr := os.Remove(p.Socket()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	p.bg.Wait()
	return err
}

// handle registers one protocol call: decode Req, run fn, tell
// Options.Observe how long that took, and encode the answer or the error
// (Docker shows its Err text to the CLI user).
func handle[Req, Res any](h sdk.Handler, path string, p *Plugin, fn func(*Req) (*Res, error)) {
	h.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		res, err := decodeAndRun(r, fn)
		if p.o.Observe != nil {
			p.o.Observe(path[1:], time.Since(start), err != nil)
		}
		switch {
		case err != nil:
			p.log.Warn("docker call refused", "call", path, "error", err)
			sdk.EncodeResponse(w, errorResponse{Err: err.Error()}, true)
		case res == nil:
			sdk.EncodeResponse(w, struct{}{}, false)
		default:
			sdk.EncodeResponse(w, res, false)
		}
	})
}

// decodeAndRun reads a request (at most 1 MiB) and runs fn on it.
func decodeAndRun[Req, Res any](r *http.Request, fn func(*Req) (*Res, error)) (*Res, error) {
	var req Req
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			return nil, fmt.Errorf("flatmesh: malformed request: %w", err)
		}
	}
	return fn(&req)
}

type errorResponse struct{ Err string }

type empty struct{}
