package agent

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/agent/api"
)

func TestValidateAttachNames(t *testing.T) {
	a := &Agent{cfg: Config{Mode: "vxlan"}}
	for _, tc := range []struct {
		req  api.AttachRequest
		want string
	}{
		{api.AttachRequest{Netns: ""}, "no network namespace given"},
		{api.AttachRequest{Netns: "x\ny"}, "control character"},
		{api.AttachRequest{Netns: "x", Name: "bad name"}, "is not allowed"},
		{api.AttachRequest{Netns: "x", IfName: "much-too-long-ifname"}, "at most 15"},
		{api.AttachRequest{Netns: "x", IfName: "a/b"}, `contains '/'`},
		{api.AttachRequest{Netns: "x", IP: "nope"}, "not an IP address"},
	} {
		if _, _, _, err := a.validateAttach(tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.req, err, tc.want)
		}
	}
}

func TestJoinListBounded(t *testing.T) {
	a := &Agent{}
	addrs := make([]string, api.MaxJoinAddrs+1)
	for i := range addrs {
		addrs[i] = "192.0.2.1"
	}
	body, _ := json.Marshal(api.JoinRequest{Addrs: addrs})
	r := httptest.NewRequest(http.MethodPost, "/v1/join", strings.NewReader(string(body)))
	_, err := a.handleJoin(r)
	var se *api.StatusError
	if err == nil || !strings.Contains(err.Error(), "at most") || !errors.As(err, &se) || se.Code != http.StatusBadRequest {
		t.Fatalf("join of %d addresses: %v", len(addrs), err)
	}
}
