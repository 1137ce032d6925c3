package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

type echoReq struct {
	Name string `json:"name"`
}

// serveTest serves a mux with one decoding endpoint on a unix socket with
// the given timeouts, and returns the socket path.
func serveTest(t *testing.T, to timeouts) string {
	t.Helper()
	m := NewMux(hclog.NewNullLogger())
	m.Handle("POST", "/echo", func(r *http.Request) (any, error) {
		var req echoReq
		if err := Decode(r, &req); err != nil {
			return nil, err
		}
		return req, nil
	})
	path := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(m.mux, to)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return path
}

func post(t *testing.T, sock, body string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}, Timeout: 5 * time.Second}
	resp, err := c.Post("http://flatmesh"+Version+"/echo", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServerBodyLimit(t *testing.T) {
	sock := serveTest(t, defaultTimeouts)
	if code, out := post(t, sock, `{"name":"ok"}`); code != http.StatusOK || !strings.Contains(out, `"ok"`) {
		t.Fatalf("small body: %d %s", code, out)
	}
	big := `{"name":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	if code, out := post(t, sock, big); code != http.StatusRequestEntityTooLarge || !strings.Contains(out, "larger than") {
		t.Fatalf("big body: %d %s", code, out)
	}
	if code, out := post(t, sock, `{"name":"a"} {"name":"b"}`); code != http.StatusBadRequest || !strings.Contains(out, "more than one JSON value") {
		t.Fatalf("two values: %d %s", code, out)
	}
	if code, out := post(t, sock, `{"nam":"a"}`); code != http.StatusBadRequest || !strings.Contains(out, "unknown field") {
		t.Fatalf("unknown field: %d %s", code, out)
	}
}

// TestServerCutsSlowClients: a client that sends half a header, or a
// header and then nothing of its body, is disconnected by the timeouts.
func TestServerCutsSlowClients(t *testing.T) {
	to := timeouts{readHeader: 200 * time.Millisecond, read: 400 * time.Millisecond, write: time.Second, idle: 300 * time.Millisecond}
	sock := serveTest(t, to)
	for name, send := range map[string]string{
		"half header": "POST /v1/echo HTTP/1.1\r\nHost: x\r\n",
		"no body":     "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
		"idle":        "", // keep-alive connection that never sends
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, send); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.Copy(io.Discard, bufio.NewReader(c))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server kept the connection open for 5 s")
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("closed only after %v", d)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"web", "web-1", "a", "c0ffee.ns:eth0", "pod/ns@x+y", strings.Repeat("a", MaxNameLen)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-web", "/x", "a b", "a\nb", "é", "a;rm", strings.Repeat("a", MaxNameLen+1)} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestValidateTargetAndJoin(t *testing.T) {
	if err := ValidateTarget("namespace", "/run/netns/x"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "a\x00b", "x\n", strings.Repeat("a", MaxTargetLen+1)} {
		if err := ValidateTarget("namespace", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := ValidateJoin([]string{"10.0.0.1"}); err != nil {
		t.Error(err)
	}
	if err := ValidateJoin(nil); err == nil {
		t.Error("empty join list accepted")
	}
	if err := ValidateJoin(make([]string, MaxJoinAddrs+1)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("long join list: %v", err)
	}
}
