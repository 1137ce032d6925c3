package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/ipam"
	"github.com/docker/go-plugins-helpers/network"
)

var flatSpace = Space{Mode: "flat", Subnet: netip.MustParsePrefix("172.16.0.0/16"),
	Range: netip.MustParsePrefix("172.16.44.0/24"), Gateway: netip.MustParseAddr("172.16.0.1"), MTU: 1500}

const ep1 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
const net1 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

// client speaks the plugin protocol to the socket as dockerd does.
type client struct {
	t  *testing.T
	hc *http.Client
}

func startPlugin(t *testing.T, b Backend, names NameSource) (*Plugin, client) {
	t.Helper()
	return startPluginWith(t, Options{Backend: b, Names: names})
}

// startPluginWith serves a plugin made from o (Dir is set here).
func startPluginWith(t *testing.T, o Options) (*Plugin, client) {
	t.Helper()
	dir, err := os.MkdirTemp("", "fmdk") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o.Dir = filepath.Join(dir, "plugins")
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	sock := p.Socket()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	return p, client{t: t, hc: hc}
}

// call posts req to path and decodes the answer into res; it returns the
// plugin's Err text ("" on success).
func (c client) call(path string, req, res any) string {
	c.t.Helper()
	body, _ := json.Marshal(req)
	resp, err := c.hc.Post("http://plugin"+path, "application/vnd.docker.plugins.v1.2+json", bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e errorResponse
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if e.Err == "" {
			c.t.Fatalf("%s: status %s without an error text", path, resp.Status)
		}
		return e.Err
	}
	if res != nil {
		if err := json.NewDecoder(resp.Body).Decode(res); err != nil {
			c.t.Fatalf("%s: decoding: %v", path, err)
		}
	}
	return ""
}

func (c client) ok(path string, req, res any) {
	c.t.Helper()
	if e := c.call(path, req, res); e != "" {
		c.t.Fatalf("%s: %s", path, e)
	}
}

func (c client) refused(path string, req any, want ...string) {
	c.t.Helper()
	e := c.call(path, req, nil)
	if e == "" {
		c.t.Fatalf("%s %+v was accepted", path, req)
	}
	for _, w := range want {
		if !strings.Contains(e, w) {
			c.t.Fatalf("%s: error %q does not say %q", path, e, w)
		}
	}
}

func TestActivateAndCapabilities(t *testing.T) {
	_, c := startPlugin(t, newFake(flatSpace), nil)
	var m struct{ Implements []string }
	c.ok("/Plugin.Activate", nil, &m)
	if strings.Join(m.Implements, ",") != "NetworkDriver,IpamDriver" {
		t.Fatalf("manifest %v", m.Implements)
	}
	var nc network.CapabilitiesResponse
	c.ok("/NetworkDriver.GetCapabilities", nil, &nc)
	if nc.Scope != "local" {
		t.Fatalf("scope %+v", nc)
	}
	var as ipam.AddressSpacesResponse
	c.ok("/IpamDriver.GetDefaultAddressSpaces", nil, &as)
	if as.LocalDefaultAddressSpace != AddressSpace {
		t.Fatalf("spaces %+v", as)
	}
}

func TestPoolRules(t *testing.T) {
	f := newFake(flatSpace)
	_, c := startPlugin(t, f, nil)
	var pr ipam.RequestPoolResponse
	// No --subnet: the pool Docker does not test against the host's routes,
	// the id names the space.
	c.ok("/IpamDriver.RequestPool", ipam.RequestPoolRequest{AddressSpace: AddressSpace}, &pr)
	if pr.Pool != AnyPool || pr.PoolID != "flatmesh:172.16.0.0/16:172.16.44.0/24" {
		t.Fatalf("pool %+v", pr)
	}
	anyID := pr.PoolID
	c.ok("/IpamDriver.RequestPool", ipam.RequestPoolRequest{Pool: "172.16.0.0/16"}, &pr)
	if pr.Pool != "172.16.0.0/16" || pr.PoolID != anyID {
		t.Fatalf("pool with --subnet %+v", pr)
	}
	c.ok("/IpamDriver.RequestPool", ipam.RequestPoolRequest{Pool: "172.16.0.0/16", SubPool: "172.16.44.0/24"}, &pr)
	c.refused("/IpamDriver.RequestPool", ipam.RequestPoolRequest{Pool: "10.9.0.0/16"},
		"--subnet 10.9.0.0/16 does not fit", "--subnet 172.16.0.0/16 --ip-range 172.16.44.0/24 --gateway 172.16.0.1")
	c.refused("/IpamDriver.RequestPool", ipam.RequestPoolRequest{Pool: "172.16.0.0/16", SubPool: "172.16.45.0/24"}, "--ip-range 172.16.45.0/24 does not fit")
	c.refused("/IpamDriver.RequestPool", ipam.RequestPoolRequest{V6: true}, "IPv6")
	c.ok("/IpamDriver.RequestPool", ipam.RequestPoolRequest{Pool: "172.16.0.0/16"}, &pr)
	var ar ipam.RequestAddressResponse
	gw := map[string]string{"RequestAddressType": gatewayType}
	c.ok("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: pr.PoolID, Options: gw}, &ar)
	if ar.Address != "172.16.0.1/16" {
		t.Fatalf("gateway %+v", ar)
	}
	c.refused("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: pr.PoolID, Address: "172.16.0.2", Options: gw}, "--gateway 172.16.0.2 does not fit")
	c.refused("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: "flatmesh:10.0.0.0/8:10.0.0.0/8"}, "no longer this cluster's")
	c.refused("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: "bogus"}, "--ipam-driver flatmesh")
	c.refused("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: pr.PoolID, Address: "172.16.9.9"}, "outside 172.16.44.0/24")
	var nr struct{}
	c.refused("/NetworkDriver.CreateNetwork", network.CreateNetworkRequest{NetworkID: net1,
		IPv4Data: []*network.IPAMData{{AddressSpace: "LocalDefault", Pool: "172.18.0.0/16"}}}, "--ipam-driver flatmesh")
	c.ok("/NetworkDriver.CreateNetwork", network.CreateNetworkRequest{NetworkID: net1,
		IPv4Data: []*network.IPAMData{{AddressSpace: AddressSpace, Pool: "172.16.0.0/16", Gateway: "172.16.0.1/16"}}}, &nr)
	c.ok("/NetworkDriver.CreateNetwork", network.CreateNetworkRequest{NetworkID: net1,
		IPv4Data: []*network.IPAMData{{AddressSpace: AddressSpace, Pool: AnyPool, Gateway: "172.16.0.1/16"}}}, &nr)
	c.refused("/NetworkDriver.CreateNetwork", network.CreateNetworkRequest{NetworkID: net1,
		IPv4Data: []*network.IPAMData{{AddressSpace: "LocalDefault", Pool: AnyPool}}}, "--ipam-driver flatmesh")
}

func TestEndpointLifecycle(t *testing.T) {
	f := newFake(flatSpace)
	p, c := startPlugin(t, f, fakeNames{names: map[string]string{ep1: "web"}})
	poolID := pool{Subnet: flatSpace.Subnet, Range: flatSpace.Range}.id()
	var ar ipam.RequestAddressResponse
	c.ok("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: poolID, Address: "172.16.44.10"}, &ar)
	if ar.Address != "172.16.44.10/16" {
		t.Fatalf("address %+v", ar)
	}
	held, _ := f.Holder(netip.MustParseAddr("172.16.44.10"))
	if !strings.HasPrefix(held.ID, pendingPrefix) {
		t.Fatalf("held by %q", held.ID)
	}
	c.refused("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: poolID, Address: "172.16.44.10"}, "already allocated to container "+held.ID)
	c.refused("/NetworkDriver.CreateEndpoint", network.CreateEndpointRequest{NetworkID: net1, EndpointID: ep1,
		Interface: &network.EndpointInterface{Address: "172.16.44.11/16"}}, "not handed out by flatmesh")
	c.refused("/NetworkDriver.CreateEndpoint", network.CreateEndpointRequest{NetworkID: net1, EndpointID: "bad id"}, "endpoint id")
	var cr network.CreateEndpointResponse
	c.ok("/NetworkDriver.CreateEndpoint", network.CreateEndpointRequest{NetworkID: net1, EndpointID: ep1,
		Interface: &network.EndpointInterface{Address: "172.16.44.10/16"}}, &cr)
	if cr.Interface != nil {
		t.Fatalf("the response must not repeat the address: %+v", cr.Interface)
	}
	if l, ok := f.Lookup(EndpointID(ep1)); !ok || l.Addr != netip.MustParseAddr("172.16.44.10") {
		t.Fatalf("endpoint lease %+v %v", l, ok)
	}
	var jr network.JoinResponse
	c.ok("/NetworkDriver.Join", network.JoinRequest{NetworkID: net1, EndpointID: ep1, SandboxKey: "/var/run/docker/netns/x"}, &jr)
	if !jr.DisableGatewayService || jr.InterfaceName.SrcName != "fppeer" || jr.InterfaceName.DstPrefix != "eth" || jr.Gateway != "172.16.0.1" {
		t.Fatalf("join %+v", jr)
	}
	if !f.isPlugged(EndpointID(ep1)) {
		t.Fatal("join did not plug")
	}
	deadline := time.Now().Add(3 * time.Second)
	for l, _ := f.Lookup(EndpointID(ep1)); l.Name != "web"; l, _ = f.Lookup(EndpointID(ep1)) {
		if time.Now().After(deadline) {
			t.Fatalf("lease never named: %+v", l)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A second endpoint asking for the same address hears who holds it.
	c.ok("/NetworkDriver.Leave", network.LeaveRequest{NetworkID: net1, EndpointID: ep1}, nil)
	if f.isPlugged(EndpointID(ep1)) {
		t.Fatal("leave did not unplug")
	}
	c.ok("/NetworkDriver.DeleteEndpoint", network.DeleteEndpointRequest{NetworkID: net1, EndpointID: ep1}, nil)
	c.ok("/IpamDriver.ReleaseAddress", ipam.ReleaseAddressRequest{PoolID: poolID, Address: "172.16.44.10"}, nil)
	if _, ok := f.Holder(netip.MustParseAddr("172.16.44.10")); ok {
		t.Fatal("address not released")
	}
	// Addresses that are not Docker's are never released by Docker.
	_, _ = f.Allocate(context.Background(), "/run/netns/x", netip.MustParseAddr("172.16.44.20"))
	c.ok("/IpamDriver.ReleaseAddress", ipam.ReleaseAddressRequest{PoolID: poolID, Address: "172.16.44.20"}, nil)
	if _, ok := f.Holder(netip.MustParseAddr("172.16.44.20")); !ok {
		t.Fatal("an attach address was released through docker")
	}
	c.refused("/NetworkDriver.Join", network.JoinRequest{NetworkID: net1, EndpointID: ep1}, "holds no address")
	f.full = true
	c.refused("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: poolID}, "no free address")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Socket()); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	p, _ := startPlugin(t, newFake(flatSpace), nil)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Socket(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := New(Options{Dir: filepath.Dir(p.Socket()), Backend: newFake(flatSpace)})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(); err != nil {
		t.Fatalf("a stale socket file blocked the restart: %v", err)
	}
	_ = q.Close()
	if _, err := New(Options{Dir: "relative", Backend: newFake(flatSpace)}); err == nil {
		t.Fatal("a relative dir was accepted")
	}
}

func TestDockerdEndpointName(t *testing.T) {
	dir, err := os.MkdirTemp("", "fmdd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/networks" {
			_, _ = w.Write([]byte(`[{"Id":"` + net1 + `","Driver":"flatmesh"},{"Id":"bbbb","Driver":"bridge"}]`))
			return
		}
		if r.URL.Path != "/networks/"+net1 {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"Name":"mynet1","Containers":{"c1":{"Name":"web","EndpointID":"` + ep1 + `"},"c2":{"Name":"db\n","EndpointID":"x"}}}`))
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	d := NewDockerd(sock)
	ctx := context.Background()
	if n, err := d.EndpointName(ctx, net1, ep1); err != nil || n != "web" {
		t.Fatalf("name %q %v", n, err)
	}
	if n, err := d.EndpointName(ctx, net1, "nope"); err != nil || n != "" {
		t.Fatalf("unknown endpoint: %q %v", n, err)
	}
	if _, err := d.EndpointName(ctx, "other", ep1); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing network: %v", err)
	}
	if eps, err := d.Endpoints(ctx); err != nil || len(eps) != 2 || !eps[ep1] || !eps["x"] {
		t.Fatalf("endpoints %v %v", eps, err)
	}
	if _, err := d.EndpointName(ctx, "../x", ep1); err == nil {
		t.Fatal("a path in the network id was accepted")
	}
}

func TestSweepReleasesOrphansAfterTwoRounds(t *testing.T) {
	f := newFake(flatSpace)
	eps := &fakeEndpoints{eps: map[string]bool{"live": true}}
	p, err := New(Options{Dir: "/nonexistent", Backend: f, Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{EndpointID("live"), EndpointID("gone"), EndpointID("joined"), pendingPrefix + "x"} {
		if _, err := f.Allocate(ctx, id, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = f.Allocate(ctx, "/run/netns/attached", netip.Addr{})
	_, _ = f.Plug(ctx, EndpointID("joined"))
	s := p.sweep(nil)
	if len(f.Leases()) != 4 || !s[EndpointID("gone")] || !s[pendingPrefix+"x"] || len(s) != 2 {
		t.Fatalf("first round released something or suspected wrongly: %v, leases %v", s, f.Leases())
	}
	eps.mu.Lock()
	eps.err = errors.New("dockerd down")
	eps.mu.Unlock()
	if s2 := p.sweep(s); len(f.Leases()) != 4 || len(s2) != 2 {
		t.Fatal("swept while dockerd did not answer")
	}
	eps.mu.Lock()
	eps.err = nil
	eps.mu.Unlock()
	p.sweep(s)
	var left []string
	for _, l := range f.Leases() {
		left = append(left, l.ID)
	}
	sort.Strings(left)
	if strings.Join(left, ",") != EndpointID("joined")+","+EndpointID("live") {
		t.Fatalf("after the second round: %v", left)
	}
	if _, ok := f.Lookup("/run/netns/attached"); !ok {
		t.Fatal("a lease that is not Docker's was swept")
	}
}
