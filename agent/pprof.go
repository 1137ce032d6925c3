package agent

import (
	"net/http"
	"net/http/pprof"

	"github.com/flatmesh/flatmesh/agent/api"
)

// pprofRoutes serves Go's profiles under /debug/pprof/ on the API's unix
// socket (root only, mode 0600) when --pprof is set; never on a TCP port.
// Read one with: curl --unix-socket SOCKET -o cpu.pprof
// 'http://flatmesh/debug/pprof/profile?seconds=10' (the socket's write
// timeout bounds a profile to under two minutes).
func (a *Agent) pprofRoutes(m *api.Mux) {
	if !a.cfg.Pprof {
		return
	}
	m.HandleRaw("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
	m.HandleRaw("GET /debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline))
	m.HandleRaw("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	m.HandleRaw("GET /debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	m.HandleRaw("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	a.log.Warn("pprof profiles are served on the API socket (--pprof: debugging only)", "path", "/debug/pprof/")
}
