package api

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestCNIContainerIDRoundTrip(t *testing.T) {
	id := CNIContainerID("fmnet", "6b2425e98071")
	if id != "cni:fmnet:6b2425e98071" {
		t.Fatalf("id %q", id)
	}
	if nw, cid, ok := ParseCNIContainerID(id); !ok || nw != "fmnet" || cid != "6b2425e98071" {
		t.Fatalf("parse: %q %q %t", nw, cid, ok)
	}
}

func TestParseCNIContainerID(t *testing.T) {
	for _, bad := range []string{"", "cni:", "cni:net", "cni::c1", "cni:net:", "cni:net:c:1", "/run/netns/x", "foreign:10.0.0.1"} {
		if _, _, ok := ParseCNIContainerID(bad); ok {
			t.Errorf("%q parsed as a CNI id", bad)
		}
	}
}

func TestCheckCNIName(t *testing.T) {
	for name, ok := range map[string]bool{
		"web": true, "web_1.a-b": true, "0abc": true,
		"": false, "-web": false, "two words": false, "a/b": false, "web:1": false,
		"a123456789012345678901234567890123456789012345678901234567890123": false, // 64
	} {
		if err := CheckCNIName(name); (err == nil) != ok {
			t.Errorf("CheckCNIName(%q) = %v, want ok=%t", name, err, ok)
		}
	}
}

// TestClientKeepsStatus: a refusal reaches the caller as a *StatusError
// with the agent's HTTP status and message (the CNI plugin maps it to a
// CNI error code).
func TestClientKeepsStatus(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "s.sock")
	m := NewMux(hclog.NewNullLogger())
	m.Handle("POST", "/cni/add", func(r *http.Request) (any, error) {
		return nil, BadRequest(errors.New("network namespace x does not exist"))
	})
	m.Handle("GET", "/cni/status", func(r *http.Request) (any, error) { return CNIStatus{Ready: true}, nil })
	srv, err := Listen(socket, m)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := NewClient(socket)
	err = c.Do(ctx, "POST", "/cni/add", CNIRequest{Network: "n"}, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusBadRequest || err.Error() != "network namespace x does not exist" {
		t.Fatalf("error %v (%T)", err, err)
	}
	var st CNIStatus
	if err := c.Do(ctx, "GET", "/cni/status", nil, &st); err != nil || !st.Ready {
		t.Fatalf("status %+v %v", st, err)
	}
}
