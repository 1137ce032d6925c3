package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/flatmesh/flatmesh/agent/api"
)

func attachment() api.CNIAttachment {
	return api.CNIAttachment{Attachment: api.Attachment{ID: "cni:net1:ctr1", Name: "web", Netns: "/run/netns/x", IfName: "eth0",
		IP: "10.213.0.5/26", Gateway: "10.213.0.1", MAC: "02:00:00:00:00:05", MTU: 1450, HostIf: "fm0123456789"},
		HostMAC: "02:00:00:00:01:05"}
}

// withFields is the attachment's JSON plus extra top-level fields, as an
// agent with more fields in its answer sends it.
func withFields(t *testing.T, att api.CNIAttachment, extra map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(att)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func netconf(version, socket, extra string) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":%q,"name":"net1","type":"flatmesh","socket":%q%s}`, version, socket, extra))
}

func cmdArgs(conf []byte) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: "ctr1", Netns: "/run/netns/x", IfName: "eth0",
		Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=web", StdinData: conf}
}

func add(t *testing.T, p plugin, args *skel.CmdArgs) (*current.Result, []byte, error) {
	t.Helper()
	r, raw, err := testutils.CmdAddWithArgs(args, func() error { return p.cmdAdd(args) })
	if err != nil {
		return nil, raw, err
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		t.Fatalf("converting the result: %v", err)
	}
	return res, raw, nil
}

// cniError asserts err is a CNI error with code and returns it.
func cniError(t *testing.T, err error, code uint) *types.Error {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T) is not a CNI error", err, err)
	}
	if te.Code != code {
		t.Fatalf("error code %d (%s), want %d", te.Code, te.Error(), code)
	}
	return te
}

func TestAddResultInEveryVersion(t *testing.T) {
	f := newFakeAgent(t)
	f.on("/cni/add", func() (any, error) { return attachment(), nil })
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			args := cmdArgs(netconf(v, f.socket, ""))
			res, raw, err := add(t, plugin{}, args)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(raw, []byte(`"cniVersion": "`+v+`"`)) {
				t.Errorf("result not in version %s:\n%s", v, raw)
			}
			var req api.CNIRequest
			f.request(t, "/cni/add", &req)
			if req != (api.CNIRequest{Network: "net1", ContainerID: "ctr1", IfName: "eth0", Netns: "/run/netns/x", Name: "web"}) {
				t.Errorf("request to the agent: %+v", req)
			}
			if len(res.Interfaces) != 2 || res.Interfaces[0].Name != "fm0123456789" || res.Interfaces[0].Mac != "02:00:00:00:01:05" ||
				res.Interfaces[0].Sandbox != "" || res.Interfaces[1].Name != "eth0" || res.Interfaces[1].Sandbox != "/run/netns/x" ||
				res.Interfaces[1].Mac != "02:00:00:00:00:05" {
				t.Errorf("interfaces: %v", res.Interfaces)
			}
			if len(res.IPs) != 1 || *res.IPs[0].Interface != 1 || res.IPs[0].Address.String() != "10.213.0.5/26" || res.IPs[0].Gateway.String() != "10.213.0.1" {
				t.Errorf("ips: %v", res.IPs)
			}
			if len(res.Routes) != 1 || res.Routes[0].Dst.String() != "0.0.0.0/0" || res.Routes[0].GW.String() != "10.213.0.1" {
				t.Errorf("routes: %v", res.Routes)
			}
			if v == "1.1.0" && (res.Interfaces[0].Mtu != 1450 || res.Interfaces[1].Mtu != 1450) {
				t.Errorf("1.1.0 result lacks the mtu: %v", res.Interfaces)
			}
		})
	}
}

func TestAddRefusesTheHostNamespace(t *testing.T) {
	f := newFakeAgent(t)
	f.on("/cni/add", func() (any, error) { return attachment(), nil })
	args := cmdArgs(netconf("1.0.0", f.socket, ""))
	args.Netns = "/proc/self/ns/net"
	_, _, err := add(t, plugin{}, args)
	if te := cniError(t, err, types.ErrInvalidNetNS); !strings.Contains(te.Msg, "this host's own network namespace") {
		t.Errorf("message: %s", te.Msg)
	}
	var req map[string]any
	f.mu.Lock()
	_, asked := f.reqs["/cni/add"]
	f.mu.Unlock()
	if asked {
		f.request(t, "/cni/add", &req)
		t.Errorf("the agent was asked to attach the host namespace: %v", req)
	}
}

func TestAddDNS(t *testing.T) {
	f := newFakeAgent(t)
	cases := []struct {
		name    string
		extra   map[string]any
		conf    string
		servers []string
		search  []string
		domain  string
	}{
		{"no cluster dns", nil, "", nil, nil, ""},
		{"servers from the agent", map[string]any{"dns": []string{"10.213.0.1"}, "dns_domain": "flatmesh"}, "",
			[]string{"10.213.0.1"}, []string{"flatmesh"}, "flatmesh"},
		{"configuration first", map[string]any{"dns": []string{"10.213.0.1"}, "dns_domain": "flatmesh"},
			`,"dns":{"nameservers":["192.0.2.53"],"search":["example.org"]}`,
			[]string{"192.0.2.53"}, []string{"example.org", "flatmesh"}, "flatmesh"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.on("/cni/add", func() (any, error) { return withFields(t, attachment(), c.extra), nil })
			res, _, err := add(t, plugin{}, cmdArgs(netconf("1.0.0", f.socket, c.conf)))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(res.DNS.Nameservers) != fmt.Sprint(c.servers) || fmt.Sprint(res.DNS.Search) != fmt.Sprint(c.search) || res.DNS.Domain != c.domain {
				t.Errorf("dns %+v, want servers %v search %v domain %q", res.DNS, c.servers, c.search, c.domain)
			}
		})
	}
	f.on("/cni/add", func() (any, error) {
		return withFields(t, attachment(), map[string]any{"dns": []string{"not-an-ip"}}), nil
	})
	_, _, err := add(t, plugin{}, cmdArgs(netconf("1.0.0", f.socket, "")))
	if te := cniError(t, err, types.ErrDecodingFailure); !strings.Contains(te.Msg, `"not-an-ip" that is not an address`) {
		t.Errorf("message: %s", te.Msg)
	}
}

func TestAddKeepsPrevResult(t *testing.T) {
	f := newFakeAgent(t)
	f.on("/cni/add", func() (any, error) { return attachment(), nil })
	prev := `,"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"lo0","sandbox":"/run/netns/x"}],` +
		`"ips":[{"address":"192.0.2.9/24","interface":0}]}`
	res, _, err := add(t, plugin{}, cmdArgs(netconf("1.0.0", f.socket, prev)))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Interfaces) != 3 || res.Interfaces[0].Name != "lo0" || res.Interfaces[2].Name != "eth0" ||
		len(res.IPs) != 2 || *res.IPs[0].Interface != 0 || *res.IPs[1].Interface != 2 || res.IPs[1].Address.String() != "10.213.0.5/26" {
		t.Fatalf("chained result: %v %v", res.Interfaces, res.IPs)
	}
}

func TestAgentUnreachable(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "none.sock")
	args := cmdArgs(netconf("1.1.0", socket, ""))
	p := plugin{stderr: &bytes.Buffer{}}
	_, _, err := add(t, p, args)
	te := cniError(t, err, types.ErrTryAgainLater)
	if !strings.Contains(te.Msg, "cannot reach the flatmesh agent at "+socket) || !strings.Contains(te.Details, "systemctl start flatmesh") {
		t.Errorf("ADD error: %s", te.Error())
	}
	cniError(t, testutils.CmdCheckWithArgs(args, func() error { return p.cmdCheck(args) }), types.ErrTryAgainLater)
	cniError(t, p.cmdGC(args), types.ErrTryAgainLater)
	cniError(t, testutils.CmdStatus(func() error { return p.cmdStatus(args) }), CodePluginNotAvailable)
	// DEL succeeds: with nothing of this container on this host there is
	// nothing to remove, and the agent would release the address later.
	stderr := &bytes.Buffer{}
	p.stderr = stderr
	if err := testutils.CmdDelWithArgs(args, func() error { return p.cmdDel(args) }); err != nil {
		t.Fatalf("DEL without an agent: %v", err)
	}
	if !strings.Contains(stderr.String(), "the agent releases its address when it starts") {
		t.Errorf("DEL said: %q", stderr.String())
	}
}

func TestAgentErrors(t *testing.T) {
	f := newFakeAgent(t)
	args := cmdArgs(netconf("1.0.0", f.socket, ""))
	f.on("/cni/add", func() (any, error) {
		return nil, api.BadRequest(errors.New("network namespace /run/netns/x does not exist"))
	})
	_, _, err := add(t, plugin{}, args)
	if te := cniError(t, err, types.ErrInvalidEnvironmentVariables); !strings.Contains(te.Msg, "/run/netns/x does not exist") {
		t.Errorf("message: %s", te.Msg)
	}
	f.on("/cni/add", func() (any, error) { return nil, errors.New("no free address in 10.213.0.0/16") })
	_, _, err = add(t, plugin{}, args)
	if te := cniError(t, err, CodeAgentFailed); !strings.Contains(te.Msg, "flatmesh ADD: no free address") {
		t.Errorf("message: %s", te.Msg)
	}
	f.on("/cni/del", func() (any, error) { return nil, errors.New("detaching: permission denied") })
	cniError(t, testutils.CmdDelWithArgs(args, func() error { return plugin{}.cmdDel(args) }), CodeAgentFailed)
	f.on("/cni/del", func() (any, error) { return api.CNIDel{}, nil })
	if err := testutils.CmdDelWithArgs(args, func() error { return plugin{}.cmdDel(args) }); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	var req api.CNIRequest
	f.request(t, "/cni/del", &req)
	if req.Network != "net1" || req.ContainerID != "ctr1" || req.IfName != "eth0" {
		t.Errorf("DEL request: %+v", req)
	}
}

func TestCheck(t *testing.T) {
	f := newFakeAgent(t)
	prevOK := `,"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"fm0123456789"},{"name":"eth0","sandbox":"/run/netns/x"}],` +
		`"ips":[{"address":"10.213.0.5/26","gateway":"10.213.0.1","interface":1}]}`
	prevOther := strings.Replace(prevOK, "10.213.0.5/26", "10.213.0.9/26", 1)
	att := attachment()
	cases := []struct {
		name  string
		drift []api.CNIDrift
		prev  string
		code  uint // 0: success
		words string
	}{
		{"clean", nil, prevOK, 0, ""},
		{"clean without prevResult", nil, "", 0, ""},
		{"no allocation", []api.CNIDrift{{Kind: api.DriftNoAllocation, Detail: "holds no address"}}, prevOK, CodeNoAllocation, "holds no address"},
		{"interface missing", []api.CNIDrift{{Kind: api.DriftInterfaceMissing, Detail: "interface eth0 is missing"}}, prevOK, CodeInterfaceMissing, "eth0 is missing"},
		{"interface wrong", []api.CNIDrift{{Kind: api.DriftInterfaceWrong, Detail: "has mtu 1300"}}, prevOK, CodeInterfaceWrong, "mtu 1300"},
		{"address wrong", []api.CNIDrift{{Kind: api.DriftAddressWrong, Detail: "lacks its address"},
			{Kind: api.DriftRouteMissing, Detail: "route 0.0.0.0/0 is missing"}}, prevOK, CodeAddressWrong, "lacks its address; route 0.0.0.0/0 is missing"},
		{"route missing", []api.CNIDrift{{Kind: api.DriftRouteMissing, Detail: "route 0.0.0.0/0 is missing"}}, prevOK, CodeRouteMissing, "is missing"},
		{"prevResult disagrees", nil, prevOther, CodeResultMismatch, "does not hold 10.213.0.5/26"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.on("/cni/check", func() (any, error) {
				if len(c.drift) > 0 && c.drift[0].Kind == api.DriftNoAllocation {
					return api.CNICheck{Drift: c.drift}, nil
				}
				return api.CNICheck{Attachment: &att, Drift: c.drift}, nil
			})
			args := cmdArgs(netconf("1.0.0", f.socket, c.prev))
			err := testutils.CmdCheckWithArgs(args, func() error { return plugin{}.cmdCheck(args) })
			if c.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if te := cniError(t, err, c.code); !strings.Contains(te.Msg, c.words) || te.Details == "" {
				t.Errorf("error %q, want it to say %q and what to do", te.Error(), c.words)
			}
		})
	}
}

func TestGCSendsValidAttachments(t *testing.T) {
	f := newFakeAgent(t)
	f.on("/cni/gc", func() (any, error) {
		return api.CNIGC{Released: []api.Attachment{{Name: "old", IP: "10.213.0.7/26", IfName: "eth0"}}}, nil
	})
	conf := netconf("1.1.0", f.socket, `,"cni.dev/valid-attachments":[{"containerID":"ctr1","ifname":"eth0"},{"containerID":"ctr2","ifname":"net1"}]`)
	stderr := &bytes.Buffer{}
	if err := (plugin{stderr: stderr}).cmdGC(&skel.CmdArgs{StdinData: conf}); err != nil {
		t.Fatal(err)
	}
	var req api.CNIGCRequest
	f.request(t, "/cni/gc", &req)
	want := []api.CNIAttachmentRef{{ContainerID: "ctr1", IfName: "eth0"}, {ContainerID: "ctr2", IfName: "net1"}}
	if req.Network != "net1" || fmt.Sprint(req.Valid) != fmt.Sprint(want) {
		t.Errorf("GC request %+v, want valid %v", req, want)
	}
	if !strings.Contains(stderr.String(), "released 10.213.0.7/26 of old") {
		t.Errorf("GC said %q", stderr.String())
	}
	// No list: every attachment of the network goes; the agent gets an
	// empty list, not a missing one.
	if err := (plugin{stderr: stderr}).cmdGC(&skel.CmdArgs{StdinData: netconf("1.1.0", f.socket, "")}); err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	f.request(t, "/cni/gc", &raw)
	if string(raw["valid"]) != "[]" {
		t.Errorf("valid = %s, want []", raw["valid"])
	}
}

func TestStatus(t *testing.T) {
	f := newFakeAgent(t)
	args := &skel.CmdArgs{StdinData: netconf("1.1.0", f.socket, "")}
	cases := []struct {
		st   api.CNIStatus
		code uint
	}{
		{api.CNIStatus{Ready: true, Mode: "vxlan"}, 0},
		{api.CNIStatus{Ready: false, Mode: "wireguard", Reason: "the wireguard data plane is not built yet"}, CodePluginNotAvailable},
		{api.CNIStatus{Ready: true, Degraded: true, Mode: "vxlan", Reason: "the data plane's last reconcile failed"}, CodeLimitedConnectivity},
	}
	for _, c := range cases {
		f.on("/cni/status", func() (any, error) { return c.st, nil })
		err := testutils.CmdStatus(func() error { return plugin{}.cmdStatus(args) })
		if c.code == 0 {
			if err != nil {
				t.Errorf("%+v: %v", c.st, err)
			}
			continue
		}
		if te := cniError(t, err, c.code); !strings.Contains(te.Msg, c.st.Reason) {
			t.Errorf("%+v: %s", c.st, te.Msg)
		}
	}
	f.on("/cni/status", func() (any, error) {
		return nil, &api.StatusError{Code: http.StatusInternalServerError, Err: errors.New("boom")}
	})
	cniError(t, plugin{}.cmdStatus(args), CodeAgentFailed)
}

func TestParseConf(t *testing.T) {
	c, err := parseConf([]byte(`{"cniVersion":"1.0.0","name":"n","type":"flatmesh"}`))
	if err != nil || c.Socket != DefaultSocket {
		t.Fatalf("default socket: %+v %v", c, err)
	}
	for _, bad := range []struct {
		conf string
		code uint
	}{
		{`{"cniVersion":"1.0.0","name":"n","type":"flatmesh","socket":"run/x.sock"}`, types.ErrInvalidNetworkConfig},
		{`{"cniVersion":"1.0.0","name":"n","type":"bridge"}`, types.ErrInvalidNetworkConfig},
		{`{"cniVersion":"1.0.0","name":"n","type":"flatmesh","socket":7}`, types.ErrDecodingFailure},
		{`{"cniVersion":"1.0.0","name":"n","type":"flatmesh","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"x"}]}}`, types.ErrDecodingFailure},
	} {
		_, err := parseConf([]byte(bad.conf))
		cniError(t, err, bad.code)
	}
}

func TestContainerName(t *testing.T) {
	for in, want := range map[string]string{
		"":                                  "",
		"IgnoreUnknown=1;K8S_POD_NAME=web1": "web1",
		"K8S_POD_NAMESPACE=x;K8S_POD_NAME=my_app.2": "my_app.2",
		"K8S_POD_NAME=has space":                    "",
		"K8S_POD_NAME=-lead":                        "",
		"OTHER=1":                                   "",
	} {
		if got := containerName(in); got != want {
			t.Errorf("containerName(%q) = %q, want %q", in, got, want)
		}
	}
}
