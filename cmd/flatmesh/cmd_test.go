package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/internal/atomicfile"
	"github.com/hashicorp/go-hclog"
)

// fakeAgent serves the given answers on a real unix socket with the API's
// own server, and records the requests.
func fakeAgent(t *testing.T, routes map[string]api.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "fm.sock")
	m := api.NewMux(hclog.NewNullLogger())
	for route, h := range routes {
		method, path, _ := strings.Cut(route, " ")
		m.Handle(method, path, h)
	}
	srv, err := api.Listen(sock, m)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return sock
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestJoinAndAgentJoinAreOneCommand(t *testing.T) {
	var got [][]string
	sock := fakeAgent(t, map[string]api.Handler{
		"POST /join": func(r *http.Request) (any, error) {
			var req api.JoinRequest
			if err := api.Decode(r, &req); err != nil {
				return nil, err
			}
			got = append(got, req.Addrs)
			return api.JoinResponse{Joined: len(req.Addrs)}, nil
		},
	})
	for _, args := range [][]string{{"join"}, {"agent", "join"}} {
		out, err := runCLI(t, append(args, "--socket", sock, "192.0.2.7")...)
		if err != nil || !strings.Contains(out, "joined: 1 of 1") {
			t.Fatalf("flatmesh %s: out %q err %v", strings.Join(args, " "), out, err)
		}
		out, err = runCLI(t, append(args, "--socket", sock, "--json", "192.0.2.8:7000")...)
		var resp api.JoinResponse
		if err != nil || json.Unmarshal([]byte(out), &resp) != nil || resp.Joined != 1 {
			t.Fatalf("flatmesh %s --json: out %q err %v", strings.Join(args, " "), out, err)
		}
	}
	if len(got) != 4 || got[1][0] != "192.0.2.8:7000" || got[3][0] != "192.0.2.8:7000" {
		t.Fatalf("the agent saw %v", got)
	}
	if _, err := runCLI(t, "agent", "join", "--socket", sock, "not an address"); err == nil {
		t.Fatal("agent join accepted a bad address")
	}
}

func TestStatusShowsTheLastPass(t *testing.T) {
	st := api.Status{Name: "h1", Mode: "vxlan", LastPass: "2026-01-01T00:00:00Z", LastPassAge: "3s",
		LastPassError: "programming forwarding rules: boom", LastApplied: "2025-12-31T23:59:00Z",
		Drift: []string{"address 10.0.0.5/24 is no longer on bridge fmbr0"}}
	sock := fakeAgent(t, map[string]api.Handler{"GET /status": func(*http.Request) (any, error) { return st, nil }})
	out, err := runCLI(t, "status", "--socket", sock)
	if err != nil || !strings.Contains(out, "FAILED 3s ago: programming forwarding rules: boom (last success 2025-12-31T23:59:00Z)") ||
		!strings.Contains(out, "drift") || !strings.Contains(out, "10.0.0.5/24 is no longer on bridge") {
		t.Fatalf("status: %q %v", out, err)
	}
	out, err = runCLI(t, "status", "--socket", sock, "--json")
	var back map[string]any
	if err != nil || json.Unmarshal([]byte(out), &back) != nil || back["last_pass_error"] != st.LastPassError || back["last_pass_age"] != "3s" {
		t.Fatalf("status --json: %q %v", out, err)
	}
	if got := lastPass(api.Status{}); got != "none yet" {
		t.Errorf("no pass: %q", got)
	}
	if got := lastPass(api.Status{LastPass: "x", LastPassAge: "1s"}); got != "ok, 1s ago" {
		t.Errorf("good pass: %q", got)
	}
}

func TestCallPrintPassesAPIErrors(t *testing.T) {
	sock := fakeAgent(t, map[string]api.Handler{"GET /ipam/check": func(*http.Request) (any, error) {
		return api.IPAMCheck{OK: false, Problems: []string{"two owners"}, Peers: []string{}}, nil
	}})
	out, err := runCLI(t, "ipam", "check", "--socket", sock)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(out, "problem: two owners") {
		t.Fatalf("ipam check with a problem: out %q err %v", out, err)
	}
	if _, err := runCLI(t, "peers", "--socket", filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Fatal("peers without an agent succeeded")
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	for _, c := range []struct {
		bi   *debug.BuildInfo
		want string
	}{
		{nil, "dev"},
		{&debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}, "dev-0123456789ab-dirty"},
		{&debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}}}, "dev-abc"},
	} {
		if got := versionFromBuildInfo(c.bi); got != c.want {
			t.Errorf("%+v: %q, want %q", c.bi, got, c.want)
		}
	}
	// This test binary is built without -X: still never "(devel)".
	if v := buildVersion(); v == "" || strings.Contains(v, "(devel)") {
		t.Errorf("buildVersion() = %q", v)
	}
}

func TestOfflineRestoreTakesTheStateDirLock(t *testing.T) {
	dir := t.TempDir()
	lock, err := atomicfile.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	err = restoreOffline(dir)
	if !errors.Is(err, atomicfile.ErrLocked) {
		t.Fatalf("offline restore beside a lock holder: %v, want ErrLocked", err)
	}
}

func TestStatusTableShowsDNS(t *testing.T) {
	var b strings.Builder
	printStatus(&b, api.Status{Name: "h1", DNS: &api.DNSStatus{Domain: "flatmesh", Listen: []string{"10.213.0.1:53"}, Names: 4, Hosts: 2, Answered: 7}})
	if !strings.Contains(b.String(), "flatmesh on 10.213.0.1:53; 4 names from 2 hosts; answered 7") {
		t.Errorf("status table:\n%s", b.String())
	}
	b.Reset()
	printStatus(&b, api.Status{Name: "h1"})
	if strings.Contains(b.String(), "dns") {
		t.Errorf("a dns row without cluster DNS:\n%s", b.String())
	}
}
