package agent

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/attach"
)

func TestDriftKindsMatchTheAPI(t *testing.T) {
	for k, want := range map[attach.DriftKind]string{
		attach.DriftInterfaceMissing: api.DriftInterfaceMissing,
		attach.DriftInterfaceWrong:   api.DriftInterfaceWrong,
		attach.DriftAddressWrong:     api.DriftAddressWrong,
		attach.DriftRouteMissing:     api.DriftRouteMissing,
	} {
		if string(k) != want {
			t.Errorf("attach drift %q is %q on the wire", k, want)
		}
	}
}

func TestDecodeCNI(t *testing.T) {
	long := strings.Repeat("a", 197)
	cases := []struct {
		body, id, name, err string
	}{
		{`{"network":"fmnet","container_id":"abc123def4567890","ifname":"eth0","netns":"/run/netns/x"}`,
			"cni:fmnet:abc123def4567890", "abc123def456", ""},
		{`{"network":"fmnet","container_id":"c1","ifname":"net1","name":"web_1.a"}`, "cni:fmnet:c1", "web_1.a", ""},
		{`{"network":"fm:net","container_id":"c1","ifname":"eth0"}`, "", "", `network name "fm:net"`},
		{`{"network":"","container_id":"c1","ifname":"eth0"}`, "", "", "network name"},
		{`{"network":"n","container_id":"c:1","ifname":"eth0"}`, "", "", `container id "c:1"`},
		{`{"network":"n","container_id":"c1","ifname":"eth0/x"}`, "", "", "eth0/x"},
		{`{"network":"n","container_id":"c1","ifname":""}`, "", "", "interface"},
		{`{"network":"n","container_id":"c1","ifname":"eth0","name":"two words"}`, "", "", `container name "two words"`},
		{`{"network":"n","container_id":"` + long + `","ifname":"eth0"}`, "", "", "too long together"},
		{`{"network":"n","container_id":"c1","ifname":"eth0","extra":1}`, "", "", "unknown field"},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodPost, "/v1/cni/add", strings.NewReader(c.body))
		req, id, err := decodeCNI(r)
		if c.err != "" {
			var se *api.StatusError
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.As(err, &se) || se.Code != http.StatusBadRequest {
				t.Errorf("%s: error %v, want a 400 saying %q", c.body, err, c.err)
			}
			continue
		}
		if err != nil || id != c.id || req.Name != c.name {
			t.Errorf("%s: id %q name %q err %v, want %q %q", c.body, id, req.Name, err, c.id, c.name)
		}
		if nw, cid, ok := api.ParseCNIContainerID(id); !ok || nw != req.Network || cid != req.ContainerID {
			t.Errorf("%s: %q does not split back: %q %q %t", c.body, id, nw, cid, ok)
		}
	}
}
