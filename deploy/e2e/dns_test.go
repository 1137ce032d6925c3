package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
	mdns "github.com/miekg/dns"
)

// upstreamAddr is the fake upstream resolver's address: on the lab's
// switch, outside the cluster's space (the vxlan lab's underlay is
// 10.99.0.0/24).
const upstreamAddr = "10.99.0.250"

// fakeResolver is the hosts' upstream DNS server, run by the test in a
// lab namespace: it knows "up.example." and records who asked.
type fakeResolver struct {
	mu      sync.Mutex
	sources map[string]int // source address -> queries
	servers []*mdns.Server
}

func startFakeResolver(t *testing.T, netns, addr string) *fakeResolver {
	t.Helper()
	f := &fakeResolver{sources: map[string]int{}}
	var pc net.PacketConn
	var tl net.Listener
	err := kernel.InNetns(netns, func() error {
		var err error
		if pc, err = net.ListenPacket("udp", net.JoinHostPort(addr, "53")); err != nil {
			return err
		}
		tl, err = net.Listen("tcp", net.JoinHostPort(addr, "53"))
		return err
	})
	if err != nil {
		if pc != nil {
			pc.Close()
		}
		t.Fatalf("fake upstream: %v", err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		f.mu.Lock()
		host, _, _ := net.SplitHostPort(w.RemoteAddr().String())
		f.sources[host]++
		f.mu.Unlock()
		m := new(mdns.Msg).SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Name == "up.example." && r.Question[0].Qtype == mdns.TypeA {
			rr, _ := mdns.NewRR("up.example. 60 IN A 192.0.2.7")
			m.Answer = append(m.Answer, rr)
		} else if len(r.Question) == 1 && r.Question[0].Name != "up.example." {
			m.Rcode = mdns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	f.servers = []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: tl, Handler: h}}
	for _, s := range f.servers {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
	}
	t.Cleanup(func() {
		for _, s := range f.servers {
			_ = s.Shutdown()
		}
	})
	return f
}

func (f *fakeResolver) seen() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.sources {
		out[k] = v
	}
	return out
}

// nslookup runs busybox nslookup inside a container's namespace.
func nslookup(ns string, args ...string) (string, error) {
	return kerneltest.NsOutput(ns, "busybox", append([]string{"nslookup"}, args...)...)
}

// resolvesTo reports whether nslookup's output gives addr for the name.
func resolvesTo(out string, addr netip.Addr) bool {
	return strings.Contains(out, "Address: "+addr.String()+"\n") || strings.HasSuffix(out, "Address: "+addr.String())
}

// TestRootDNS runs 3 hosts x 2 named containers in vxlan mode and checks
// the cluster DNS as a container sees it: every container resolves every
// name and address (reverse) through its gateway, bare names resolve with
// the search domain, other names go to the host's upstream resolver (a fake
// one on the lab switch, from the host's own address), a detached
// container's name is NXDOMAIN everywhere within seconds, and a source
// outside the cluster is REFUSED.
func TestRootDNS(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "busybox")
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.53\nnameserver "+upstreamAddr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := upLab(t, lab.Options{Hosts: 3, ContainersPerHost: 2, ExtraAgentArgs: []string{"--dns-resolv-conf", resolv}})
	sw := l.Switch().Netns
	kerneltest.NsRun(t, sw, "ip", "addr", "add", upstreamAddr+"/24", "dev", "sw0")
	up := startFakeResolver(t, lab.NetnsPath(sw), upstreamAddr)
	env := dnsLab{l: l, conts: l.Containers(), up: up, sw: sw}

	t.Run("status and attach report the servers", func(t *testing.T) { dnsCheckReported(t, env) })
	t.Run("every container resolves every name", func(t *testing.T) { dnsCheckResolveAll(t, env) })
	t.Run("reverse lookups", func(t *testing.T) { dnsCheckReverse(t, env) })
	t.Run("bare names through the search domain", func(t *testing.T) { dnsCheckSearch(t, env) })
	t.Run("other names go upstream", func(t *testing.T) { dnsCheckUpstream(t, env) })
	t.Run("outsiders are refused", func(t *testing.T) { dnsCheckRefused(t, env) })
	t.Run("a dead host's names stay; a restarted host catches up", func(t *testing.T) { dnsCheckRestart(t, env) })
	t.Run("detach: NXDOMAIN everywhere within seconds", func(t *testing.T) { dnsCheckDetach(t, env) })
}

// dnsLab is what the checks of TestRootDNS share.
type dnsLab struct {
	l     *lab.Lab
	conts []lab.Container
	up    *fakeResolver
	sw    string // the switch namespace, where the fake upstream runs
}

func dnsCheckReported(t *testing.T, e dnsLab) {
	l := e.l
	for _, h := range l.Hosts() {
		var st api.Status
		kerneltest.Eventually(t, 10*time.Second, h.Name+" listening", func() bool {
			out, err := l.CLI(h.Name, "status", "--json")
			return err == nil && json.Unmarshal(out, &st) == nil && st.DNS != nil && len(st.DNS.Listen) > 0
		})
		if st.DNS.Domain != "flatmesh" || len(st.DNS.Upstreams) != 1 || st.DNS.Upstreams[0] != upstreamAddr+":53" {
			t.Errorf("%s status dns: %+v (want domain flatmesh, upstream %s only: loopback skipped)", h.Name, st.DNS, upstreamAddr)
		}
		out, err := l.CLI(h.Name, "containers", "--json")
		var list []api.Attachment
		if err != nil || json.Unmarshal(out, &list) != nil || len(list) != 2 {
			t.Fatalf("%s containers: %v\n%s", h.Name, err, out)
		}
		for _, a := range list {
			if len(a.DNS) != 1 || a.DNS[0] != a.Gateway {
				t.Errorf("%s: container %s dns %v, want its gateway %s", h.Name, a.Name, a.DNS, a.Gateway)
			}
			if !strings.Contains(strings.Join(st.DNS.Listen, " "), a.Gateway+":53") {
				t.Errorf("%s listens on %v, not on %s's gateway %s", h.Name, st.DNS.Listen, a.Name, a.Gateway)
			}
		}
	}
}

func dnsCheckResolveAll(t *testing.T, e dnsLab) {
	conts := e.conts
	start := time.Now()
	for _, c := range conts {
		for _, o := range conts {
			kerneltest.Eventually(t, 15*time.Second, fmt.Sprintf("%s resolving %s", c.Name, o.Name), func() bool {
				out, err := nslookup(c.Netns, o.Name+".flatmesh", c.Gateway.String())
				return err == nil && resolvesTo(out, o.IP.Addr())
			})
		}
	}
	t.Logf("%d lookups answered (%s including the gossip of names)", len(conts)*len(conts), time.Since(start).Round(time.Millisecond))
	out, _ := nslookup(conts[0].Netns, conts[len(conts)-1].Name+".flatmesh", conts[0].Gateway.String())
	t.Logf("one of them:\n%s", out)
}

func dnsCheckReverse(t *testing.T, e dnsLab) {
	conts := e.conts
	for _, c := range conts {
		for _, o := range conts {
			out, err := nslookup(c.Netns, o.IP.Addr().String(), c.Gateway.String())
			if err != nil || !strings.Contains(out, "name = "+o.Name+".flatmesh") {
				t.Errorf("%s: reverse of %s: %v\n%s", c.Name, o.IP.Addr(), err, out)
			}
		}
	}
}

func dnsCheckSearch(t *testing.T, e dnsLab) {
	conts := e.conts
	c, o := conts[0], conts[len(conts)-1]
	// ip netns exec bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf.
	dir := filepath.Join("/etc/netns", c.Netns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := "search flatmesh\nnameserver " + c.Gateway.String() + "\n"
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := nslookup(c.Netns, o.Name)
	t.Logf("nslookup %s in %s:\n%s", o.Name, c.Name, out)
	if err != nil || !resolvesTo(out, o.IP.Addr()) {
		t.Errorf("%s: bare %s with search flatmesh: %v\n%s", c.Name, o.Name, err, out)
	}
}

func dnsCheckUpstream(t *testing.T, e dnsLab) {
	l, conts, up := e.l, e.conts, e.up
	for _, c := range conts {
		out, err := nslookup(c.Netns, "up.example", c.Gateway.String())
		if err != nil || !resolvesTo(out, netip.MustParseAddr("192.0.2.7")) {
			t.Errorf("%s: up.example: %v\n%s", c.Name, err, out)
		}
		out, err = nslookup(c.Netns, "nowhere.example", c.Gateway.String())
		if err == nil || !strings.Contains(out, "NXDOMAIN") {
			t.Errorf("%s: nowhere.example: want the upstream's NXDOMAIN: %v\n%s", c.Name, err, out)
		}
	}
	seen := up.seen()
	for _, h := range l.Hosts() {
		if seen[h.Addr().String()] == 0 {
			t.Errorf("the upstream heard nothing from %s (%s): %v", h.Name, h.Addr(), seen)
		}
	}
	for src := range seen {
		if strings.HasPrefix(src, "10.213.") {
			t.Errorf("the upstream saw a container's address %s: queries must leave from the host", src)
		}
	}
}

func dnsCheckRefused(t *testing.T, e dnsLab) {
	l, conts, sw := e.l, e.conts, e.sw
	h1, _ := l.Host("h1")
	gw := conts[0].Gateway.String()
	kerneltest.NsRun(t, sw, "ip", "route", "add", "10.213.0.0/16", "via", h1.Addr().String())
	for _, name := range []string{"up.example.", conts[0].Name + ".flatmesh."} {
		var r *mdns.Msg
		err := kernel.InNetns(lab.NetnsPath(sw), func() error {
			var err error
			r, _, err = (&mdns.Client{Net: "udp", Timeout: 3 * time.Second}).Exchange(new(mdns.Msg).SetQuestion(name, mdns.TypeA), gw+":53")
			return err
		})
		if err != nil || r.Rcode != mdns.RcodeRefused || len(r.Answer) != 0 {
			t.Errorf("%s from %s (outside the cluster) to %s: %v %v, want REFUSED", name, upstreamAddr, gw, r, err)
		}
	}
	var st api.Status
	if out, err := l.CLI("h1", "status", "--json"); err != nil || json.Unmarshal(out, &st) != nil || st.DNS == nil || st.DNS.Refused == 0 {
		t.Errorf("h1 status does not count the refused queries: %v %+v", err, st.DNS)
	}
}

func dnsCheckRestart(t *testing.T, e dnsLab) {
	l := e.l
	c11, _ := l.Container("c11")
	c21, _ := l.Container("c21")
	c31, _ := l.Container("c31")
	if err := l.StopAgent("h2", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitState(t, l, []string{"h1", "h3"}, "h2", "failed", 30*time.Second)
	if out, err := nslookup(c11.Netns, "c21.flatmesh", c11.Gateway.String()); err != nil || !resolvesTo(out, c21.IP.Addr()) {
		t.Errorf("c21 (on the dead h2, which still owns its block) no longer resolves: %v\n%s", err, out)
	}
	// Back after failing, then a crash and a restart too quick for
	// the others to notice: either way h2's containers resolve the
	// others' names again within seconds, long before the 30 s refresh.
	for _, quick := range []bool{false, true} {
		if quick {
			if err := l.StopAgent("h2", syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.StartAgent("h2"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		kerneltest.Eventually(t, 15*time.Second, fmt.Sprintf("c21 resolving c11 and c31 (quick restart %v)", quick), func() bool {
			a, err1 := nslookup(c21.Netns, "c11.flatmesh", c21.Gateway.String())
			b, err2 := nslookup(c21.Netns, "c31.flatmesh", c21.Gateway.String())
			return err1 == nil && err2 == nil && resolvesTo(a, c11.IP.Addr()) && resolvesTo(b, c31.IP.Addr())
		})
		t.Logf("restarted h2 (quick %v) resolves the others' names after %s", quick, time.Since(start).Round(time.Millisecond))
	}
}

func dnsCheckDetach(t *testing.T, e dnsLab) {
	l, conts := e.l, e.conts
	gone := conts[0]
	if out, err := cli(l, gone.Host, "detach", gone.Name); err != nil {
		t.Fatalf("detach: %s", out)
	}
	start := time.Now()
	for _, c := range conts[1:] {
		kerneltest.Eventually(t, 10*time.Second, c.Name+" seeing "+gone.Name+" gone", func() bool {
			out, err := nslookup(c.Netns, gone.Name+".flatmesh", c.Gateway.String())
			return err != nil && strings.Contains(out, "NXDOMAIN")
		})
	}
	t.Logf("%s is NXDOMAIN from every other container after %s", gone.Name, time.Since(start).Round(time.Millisecond))
	for _, c := range conts[1:] {
		if out, err := nslookup(c.Netns, c.Name+".flatmesh", c.Gateway.String()); err != nil || !resolvesTo(out, c.IP.Addr()) {
			t.Errorf("%s no longer resolves itself after another detach: %v\n%s", c.Name, err, out)
		}
	}
}

// TestRootDNSFlat checks cluster DNS in flat mode: the agent listens on the
// host's own LAN address (the bridge's), containers on both hosts resolve
// each other through it, other names go to the LAN's resolver (a fake one
// on the plain router machine), and that router, a LAN device outside the
// flat range, is REFUSED: the agent is no open resolver for the LAN.
func TestRootDNSFlat(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "busybox")
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	router := "172.16.0.1" // the flat lab's plain machine
	if err := os.WriteFile(resolv, []byte("nameserver "+router+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := upLab(t, lab.Options{Hosts: 2, Mode: lab.ModeFlat, ContainersPerHost: 2, ExtraAgentArgs: []string{"--dns-resolv-conf", resolv}})
	pm, _ := l.Plain()
	startFakeResolver(t, lab.NetnsPath(pm.Netns), router)
	servers := map[string]string{} // container -> its DNS server
	for _, h := range l.Hosts() {
		var list []api.Attachment
		kerneltest.Eventually(t, 10*time.Second, h.Name+" reporting its DNS server", func() bool {
			out, err := l.CLI(h.Name, "containers", "--json")
			return err == nil && json.Unmarshal(out, &list) == nil && len(list) == 2 && len(list[0].DNS) == 1
		})
		for _, a := range list {
			if len(a.DNS) != 1 || a.DNS[0] != h.Addr().String() {
				t.Errorf("%s: container %s dns %v, want the host's LAN address %s", h.Name, a.Name, a.DNS, h.Addr())
			}
			servers[a.Name] = h.Addr().String()
		}
	}
	conts := l.Containers()
	for _, c := range conts {
		for _, o := range conts {
			kerneltest.Eventually(t, 15*time.Second, fmt.Sprintf("%s resolving %s", c.Name, o.Name), func() bool {
				out, err := nslookup(c.Netns, o.Name+".flatmesh", servers[c.Name])
				return err == nil && resolvesTo(out, o.IP.Addr())
			})
		}
		out, err := nslookup(c.Netns, conts[0].IP.Addr().String(), servers[c.Name])
		if err != nil || !strings.Contains(out, "name = "+conts[0].Name+".flatmesh") {
			t.Errorf("%s: reverse of %s: %v\n%s", c.Name, conts[0].IP.Addr(), err, out)
		}
		out, err = nslookup(c.Netns, "up.example", servers[c.Name])
		if err != nil || !resolvesTo(out, netip.MustParseAddr("192.0.2.7")) {
			t.Errorf("%s: up.example through the LAN resolver: %v\n%s", c.Name, err, out)
		}
	}
	h1, _ := l.Host("h1")
	for _, name := range []string{"up.example.", conts[0].Name + ".flatmesh."} {
		var r *mdns.Msg
		err := kernel.InNetns(lab.NetnsPath(pm.Netns), func() error {
			var err error
			r, _, err = (&mdns.Client{Net: "tcp", Timeout: 3 * time.Second}).Exchange(new(mdns.Msg).SetQuestion(name, mdns.TypeA), h1.Addr().String()+":53")
			return err
		})
		if err != nil || r.Rcode != mdns.RcodeRefused || len(r.Answer) != 0 {
			t.Errorf("%s from the LAN router to %s: %v %v, want REFUSED", name, h1.Addr(), r, err)
		}
	}
}

// dockerd is a private Docker daemon in a lab host's network namespace (and
// its own mount namespace), as design.md's test rig describes.
type dockerd struct {
	sock string
	cmd  *exec.Cmd
}

func startDockerd(t *testing.T, netns string) *dockerd {
	t.Helper()
	dir, err := os.MkdirTemp("", "fmdk") // short: the socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerd{sock: filepath.Join(dir, "d.sock")}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command("nsenter", "--net="+lab.NetnsPath(netns), "unshare", "--mount", "--propagation", "slave",
		"dockerd", "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"-H", "unix://"+d.sock, "--pidfile", filepath.Join(dir, "d.pid"), "--storage-driver", "vfs")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = d.cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("dockerd log tail:\n%s", lastLinesOf(string(b), 30))
		}
		os.RemoveAll(dir)
	})
	kerneltest.Eventually(t, 30*time.Second, "dockerd to answer", func() bool {
		_, err := d.run("version")
		return err == nil
	})
	return d
}

func (d *dockerd) run(args ...string) (string, error) {
	out, err := exec.Command("/usr/bin/docker", append([]string{"-H", "unix://" + d.sock}, args...)...).CombinedOutput()
	return string(out), err
}

func (d *dockerd) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := d.run(args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// importBusybox makes image "fmbusybox" of the host's busybox-static.
func (d *dockerd) importBusybox(t *testing.T) {
	t.Helper()
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dir := range []string{"bin/", "etc/", "tmp/"} {
		_ = tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	_ = tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))})
	_, _ = tw.Write(bin)
	_ = tw.WriteHeader(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox"})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/docker", "-H", "unix://"+d.sock, "import", "-", "fmbusybox")
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
}

func lastLinesOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestRootDNSDocker runs a private dockerd on lab host h1 and checks the
// documented recipe: a Docker container started with --dns <gateway>
// --dns-search flatmesh and given a flatmesh address (flatmesh attach of
// its namespace; the Docker plugin will do this) resolves a container on
// h2 by its bare name, directly (--network none: Docker writes our server
// into its resolv.conf) and through Docker's embedded DNS (a user-defined
// network: 127.0.0.11 forwards what it does not know to --dns, from inside
// the container). Its own name is then known on h2.
func TestRootDNSDocker(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "busybox", "dockerd", "/usr/bin/docker", "unshare")
	l := upLab(t, lab.Options{Hosts: 2, ContainersPerHost: 1})
	h1, _ := l.Host("h1")
	c11, _ := l.Container("c11")
	c21, _ := l.Container("c21")
	d := startDockerd(t, h1.Netns)
	d.importBusybox(t)
	gw := c11.Gateway.String() // any of h1's gateways serves every container of h1

	d.must(t, "network", "create", "fmud")
	t.Cleanup(func() { _, _ = d.run("network", "rm", "fmud") })
	for _, c := range []struct{ name, network, ifname string }{{"dk1", "none", "eth0"}, {"dk2", "fmud", "eth1"}} {
		d.must(t, "run", "-d", "--name", c.name, "--network", c.network, "--dns", gw, "--dns-search", "flatmesh",
			"fmbusybox", "/bin/busybox", "sleep", "600")
		t.Cleanup(func() { _, _ = d.run("rm", "-f", c.name) })
		pid := d.must(t, "inspect", "-f", "{{.State.Pid}}", c.name)
		if c.network != "none" {
			// On a flatmesh network the plugin gives the default route; here
			// Docker's own bridge network has it, so hand it over.
			if out, err := exec.Command("nsenter", "-t", pid, "-n", "ip", "route", "del", "default").CombinedOutput(); err != nil {
				t.Fatalf("removing docker's default route in %s: %v\n%s", c.name, err, out)
			}
		}
		if out, err := cli(l, "h1", "attach", "/proc/"+pid+"/ns/net", "--name", c.name, "--ifname", c.ifname, "--json"); err != nil {
			t.Fatalf("attach %s: %s", c.name, out)
		}
		conf := d.must(t, "exec", c.name, "/bin/busybox", "cat", "/etc/resolv.conf")
		var out string
		kerneltest.Eventually(t, 10*time.Second, c.name+" resolving c21", func() bool {
			var err error
			out, err = d.run("exec", c.name, "/bin/busybox", "nslookup", "c21")
			return err == nil && resolvesTo(out, c21.IP.Addr())
		})
		t.Logf("%s (network %s), resolv.conf:\n%s\nnslookup c21:\n%s", c.name, c.network, conf, out)
		kerneltest.Eventually(t, 10*time.Second, "c21 resolving "+c.name, func() bool {
			out, err := nslookup(c21.Netns, c.name+".flatmesh", c21.Gateway.String())
			return err == nil && strings.Contains(out, "Address: 10.213.")
		})
	}
}
