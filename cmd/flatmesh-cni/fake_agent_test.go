package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/hashicorp/go-hclog"
)

// fakeAgent serves the agent's CNI endpoints on a unix socket with the
// agent's own API server and wire types; each test scripts the answers.
// It stands in for the agent so the plugin's translation (CNI in, CNI
// out, error codes) is tested without root; the real agent is driven by
// the root e2e tests (deploy/e2e/cni_test.go).
type fakeAgent struct {
	socket string

	mu     sync.Mutex
	reqs   map[string][]byte // last request body per path
	answer map[string]func() (any, error)
}

func newFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	f := &fakeAgent{socket: filepath.Join(t.TempDir(), "a.sock"), reqs: map[string][]byte{}, answer: map[string]func() (any, error){}}
	m := api.NewMux(hclog.NewNullLogger())
	for _, r := range []struct{ method, path string }{
		{"POST", "/cni/add"}, {"POST", "/cni/del"}, {"POST", "/cni/check"}, {"POST", "/cni/gc"}, {"GET", "/cni/status"},
	} {
		m.Handle(r.method, r.path, f.handler(r.path))
	}
	srv, err := api.Listen(f.socket, m)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return f
}

func (f *fakeAgent) handler(path string) api.Handler {
	return func(r *http.Request) (any, error) {
		var body json.RawMessage
		if r.Method == http.MethodPost {
			if err := api.Decode(r, &body); err != nil {
				return nil, err
			}
		}
		f.mu.Lock()
		f.reqs[path] = body
		ans := f.answer[path]
		f.mu.Unlock()
		if ans == nil {
			return nil, errors.New("fake agent: no answer scripted for " + path)
		}
		return ans()
	}
}

// on scripts the answer to path.
func (f *fakeAgent) on(path string, ans func() (any, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer[path] = ans
}

// request decodes the last request to path into v.
func (f *fakeAgent) request(t *testing.T, path string, v any) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := json.Unmarshal(f.reqs[path], v); err != nil {
		t.Fatalf("request to %s: %v (%s)", path, err, f.reqs[path])
	}
}
