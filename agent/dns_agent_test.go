package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/ipam"
	"github.com/hashicorp/go-hclog"
)

// dnsTestAgent is an agent wired by the production code (openIPAM,
// startDNS, startCluster) with real memberlist on its own loopback address,
// over a fake data plane: the test runs the DNS part of a pass by hand.
func dnsTestAgent(t *testing.T, name, ip string, join []string) *Agent {
	t.Helper()
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 10.213.0.1\nnameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Name: name, Bind: netip.AddrPortFrom(netip.MustParseAddr(ip), 0), Mode: "vxlan", Cluster: "dnstest",
		StateDir: dir, Insecure: true, GossipTiming: "local", CIDR: netip.MustParsePrefix("10.213.0.0/16"), BlockBits: 26,
		Bridge: "fmdnstest0", DNS: true, DNSDomain: "flatmesh", DNSResolvConf: rc, Join: join,
	}
	cfg.Advertise = cfg.Bind
	a, err := New(Options{Config: cfg, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	a.plane = &fakePlane{a: a, caps: Capabilities{Attach: true, GatewayPerBlock: true}, inUse: map[netip.Addr]bool{}}
	if a.ipam, err = a.openIPAM(); err != nil {
		t.Fatal(err)
	}
	a.startDNS()
	if a.cl, err = a.startCluster(nil, cluster.Meta{}); err != nil {
		t.Fatal(err)
	}
	a.clRef.Store(a.cl)
	t.Cleanup(func() { _ = a.cl.Shutdown(); a.stopDNS() })
	return a
}

// dnsPassNow runs the DNS part of a reconcile pass (the data plane is not
// there: no bridge, so no listeners).
func (a *Agent) dnsPassNow() { a.dnsPass(a.snapshot()) }

func addrsOf(a *Agent, name string) []string {
	var out []string
	for _, ad := range a.dns.handler.Table().Addrs(name) {
		out = append(out, ad.String())
	}
	return out
}

func eventually(t *testing.T, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNamesRideGossip: two agents on loopback with real memberlist; names
// published by one are answered by the other (the same name on both hosts
// answers both addresses), aliases travel too, a released container's name
// is gone on the other host within moments.
func TestNamesRideGossip(t *testing.T) {
	h1 := dnsTestAgent(t, "h1", "127.0.0.1", nil)
	self := h1.cl.Self()
	seedAddr := netip.AddrPortFrom(self.Addr, self.Port).String()
	h2 := dnsTestAgent(t, "h2", "127.0.0.2", []string{seedAddr}) // a join address: h2 does not seed a map of its own
	if _, err := h2.cl.Join([]string{seedAddr}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alloc := func(a *Agent, id, name string) ipam.Allocation {
		a.ipam.PeersChanged(a.aliveNames())
		al, err := a.ipam.Allocate(ctx, ipam.Request{ID: id, IfName: "eth0", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return al
	}
	w1 := alloc(h1, "/run/netns/a", "web")
	w2 := alloc(h2, "/run/netns/b", "Web")
	db := alloc(h2, "/run/netns/c", "db")
	_ = alloc(h2, "/run/netns/d", "not a dns name")
	if err := h1.SetDNSAliases("/run/netns/a", "eth0", []string{"api", "WWW"}); err != nil {
		t.Fatal(err)
	}
	if err := h1.SetDNSAliases("/run/netns/a", "eth0", []string{"bad alias"}); err == nil {
		t.Error("an invalid alias was accepted")
	}
	if err := h1.SetDNSAliases("/run/netns/zzz", "eth0", []string{"x"}); err == nil {
		t.Error("an alias for an unknown allocation was accepted")
	}
	want := []string{w1.Prefix.Addr().String(), w2.Prefix.Addr().String()}
	slices.Sort(want)
	for _, a := range []*Agent{h1, h2} {
		eventually(t, func() string { return a.cfg.Name + " answering every name: " + bookState(h1, h2) }, func() bool {
			h1.dnsPassNow()
			h2.dnsPassNow()
			return slices.Equal(addrsOf(a, "web"), want) && slices.Equal(addrsOf(a, "db"), []string{db.Prefix.Addr().String()}) &&
				slices.Equal(addrsOf(a, "www"), []string{w1.Prefix.Addr().String()}) && len(addrsOf(a, "api")) == 1
		})
	}
	if hosts, names := h1.dns.book.stats(); hosts != 2 || names != 5 {
		t.Errorf("h1's book: %d hosts, %d names; want 2 and 5 (the invalid name is not published)", hosts, names)
	}
	if err := h2.ipam.Release("/run/netns/c", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := h1.ipam.Release("/run/netns/a", "eth0"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h1.dnsPassNow()
	h2.dnsPassNow()
	eventually(t, func() string { return "released names gone on the other host: " + bookState(h1, h2) }, func() bool {
		return len(addrsOf(h1, "db")) == 0 && slices.Equal(addrsOf(h2, "web"), []string{w2.Prefix.Addr().String()}) && len(addrsOf(h2, "www")) == 0
	})
	t.Logf("released names gone on the other host after %s", time.Since(start).Round(time.Millisecond))
	if st := h1.dnsStatus(); st == nil || st.Domain != "flatmesh" || len(st.Upstreams) != 1 || st.Upstreams[0] != "192.0.2.53:53" {
		t.Errorf("status: %+v (want the upstream outside the cluster's space only)", st)
	}
}

// bookState describes what each agent's book and table hold.
func bookState(as ...*Agent) string {
	out := ""
	for _, a := range as {
		hosts, names := a.dns.book.stats()
		var members []string
		for _, p := range a.cl.Members() {
			members = append(members, p.Name+"/"+string(p.State))
		}
		owned := map[string]int{}
		for o, bs := range a.ipam.BlocksByOwner() {
			owned[o] = len(bs)
		}
		out += fmt.Sprintf("\n%s: members %v, book %d hosts %d names, web %v db %v www %v api %v, blocks per owner %v", a.cfg.Name, members, hosts, names,
			addrsOf(a, "web"), addrsOf(a, "db"), addrsOf(a, "www"), addrsOf(a, "api"), owned)
	}
	return out
}
