package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
)

// StatusError lets a handler choose the HTTP status of its error.
type StatusError struct {
	Code int
	Err  error
}

func (e *StatusError) Error() string { return e.Err.Error() }
func (e *StatusError) Unwrap() error { return e.Err }

// BadRequest marks err as the caller's fault (HTTP 400).
func BadRequest(err error) error { return &StatusError{Code: http.StatusBadRequest, Err: err} }

// NotFound marks err as "no such object" (HTTP 404).
func NotFound(err error) error { return &StatusError{Code: http.StatusNotFound, Err: err} }

// Handler is a JSON endpoint: it decodes nothing itself; Decode does.
type Handler func(r *http.Request) (any, error)

// Mux routes versioned JSON endpoints.
type Mux struct {
	mux *http.ServeMux
	log hclog.Logger
}

// NewMux returns an empty mux.
func NewMux(log hclog.Logger) *Mux { return &Mux{mux: http.NewServeMux(), log: log} }

// Handle registers h for a method and a path under /v1 ("GET /status").
func (m *Mux) Handle(method, path string, h Handler) {
	m.mux.HandleFunc(method+" "+Version+path, func(w http.ResponseWriter, r *http.Request) {
		out, err := h(r)
		if err != nil {
			code := http.StatusInternalServerError
			var se *StatusError
			if errors.As(err, &se) {
				code = se.Code
			}
			m.log.Debug("api error", "method", method, "path", path, "code", code, "error", err)
			writeJSON(w, code, Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// HandleRaw registers a plain http.Handler for a full ServeMux pattern
// (such as "GET /debug/pprof/"), outside /v1 and its JSON encoding.
func (m *Mux) HandleRaw(pattern string, h http.Handler) { m.mux.Handle(pattern, h) }

// Decode reads a JSON request body into v, rejecting unknown fields.
func Decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &StatusError{Code: http.StatusRequestEntityTooLarge,
				Err: fmt.Errorf("request body is larger than %d bytes", MaxBodyBytes)}
		}
		return BadRequest(fmt.Errorf("bad request body: %w", err))
	}
	if dec.More() {
		return BadRequest(errors.New("bad request body: more than one JSON value"))
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Server serves a Mux on a unix socket with root-only permissions.
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
}

// Listen creates the socket (mode 0600). The directory must exist; a stale
// socket left by a dead agent is replaced, a live one is refused.
func Listen(path string, m *Mux) (*Server, error) {
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("socket directory of %s: %w", path, err)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s is in use: another agent is running", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket %s: %w", path, err)
		}
	}
	oldMask := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(oldMask)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restricting %s: %w", path, err)
	}
	s := &Server{path: path, ln: ln, srv: newHTTPServer(m.mux, defaultTimeouts)}
	return s, nil
}

// MaxHeaderBytes bounds a request's header.
const MaxHeaderBytes = 16 << 10

// timeouts of the API server.
type timeouts struct {
	readHeader, read, write, idle time.Duration
}

// defaultTimeouts: a client that does not send its request within seconds
// is cut off; write covers the slowest handler (an attach waits up to a
// minute for a block from a peer; a flat restore takes up to one).
var defaultTimeouts = timeouts{readHeader: 5 * time.Second, read: 10 * time.Second, write: 2 * time.Minute, idle: time.Minute}

func newHTTPServer(h http.Handler, t timeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.readHeader,
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// Serve blocks until Shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving %s: %w", s.path, err)
	}
	return nil
}

// Shutdown stops serving, waits for running requests, and removes the socket.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	_ = os.Remove(s.path)
	return err
}
