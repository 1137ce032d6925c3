package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/flatmesh/flatmesh/agent/api"
)

// TestPprofOnlyWithTheFlag serves the API mux on a unix socket: with
// --pprof the profiles answer under /debug/pprof/, without it they are
// not there.
func TestPprofOnlyWithTheFlag(t *testing.T) {
	for _, on := range []bool{true, false} {
		a := &Agent{cfg: Config{Pprof: on}, log: hclog.NewNullLogger()}
		m := api.NewMux(hclog.NewNullLogger())
		a.pprofRoutes(m)
		sock := filepath.Join(t.TempDir(), "a.sock")
		srv, err := api.Listen(sock, m)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve() }()
		t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
		c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
		resp, err := c.Get("http://flatmesh/debug/pprof/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if on && (resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "agent.test")) {
			t.Errorf("with --pprof: %d %q", resp.StatusCode, body)
		}
		if !on && resp.StatusCode != http.StatusNotFound {
			t.Errorf("without --pprof: %d, want 404", resp.StatusCode)
		}
	}
}
