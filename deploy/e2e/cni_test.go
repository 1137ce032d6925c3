package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// TestRootCNI drives flatmesh-cni with real runtimes on a two-host VXLAN
// lab: cnitool (ADD, CHECK, DEL, drift, the Debian tuning and portmap
// plugins chained after flatmesh), DEL while the agent is down, GC and
// STATUS through libcni, and podman with the CNI backend running busybox
// containers that ping across hosts and publish a port through portmap.
func TestRootCNI(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 2})
	r := newCNIRig(t, l)
	t.Run("cnitool add check del across hosts", func(t *testing.T) { testCNItool(t, r) })
	t.Run("del while the agent is down leaks nothing", func(t *testing.T) { testCNIDelAgentDown(t, r) })
	t.Run("gc and status", func(t *testing.T) { testCNIGCStatus(t, r) })
	t.Run("podman across hosts", func(t *testing.T) { testCNIPodman(t, r) })
}

// cniAdd runs cnitool add and returns the container's address.
func cniAdd(t *testing.T, r *cniRig, host, net, ns, args string) (*current.Result, netip.Prefix) {
	t.Helper()
	out, err := r.cnitoolOn(host, "add", net, kerneltest.NetnsPath(ns), args)
	if err != nil {
		t.Fatalf("cnitool add %s on %s: %v\n%s", net, host, err, out)
	}
	res, err := current.NewResult([]byte(out))
	if err != nil {
		t.Fatalf("cnitool add printed no CNI result: %v\n%s", err, out)
	}
	cur, err := current.GetResult(res)
	if err != nil || len(cur.IPs) != 1 {
		t.Fatalf("result %v: %v", res, err)
	}
	ones, _ := cur.IPs[0].Address.Mask.Size()
	ip, _ := netip.AddrFromSlice(cur.IPs[0].Address.IP)
	return cur, netip.PrefixFrom(ip.Unmap(), ones)
}

func testCNItool(t *testing.T, r *cniRig) {
	used1, used2 := mustUsed(t, r.l, "h1"), mustUsed(t, r.l, "h2")
	ns1, ns2 := kerneltest.Netns(t, "cn"), kerneltest.Netns(t, "cn")
	start := time.Now()
	res1, ip1 := cniAdd(t, r, "h1", "fmnet", ns1, "IgnoreUnknown=1;K8S_POD_NAME=web1")
	t.Logf("FIGURE: cnitool add (flatmesh, tuning, portmap) took %s", time.Since(start).Round(time.Millisecond))
	_, ip2 := cniAdd(t, r, "h2", "fmnet", ns2, "")

	if len(res1.Interfaces) != 2 || res1.Interfaces[1].Sandbox != kerneltest.NetnsPath(ns1) || res1.IPs[0].Gateway == nil ||
		len(res1.Routes) != 1 || res1.Routes[0].Dst.String() != "0.0.0.0/0" {
		t.Errorf("result: interfaces %v ips %v routes %v", res1.Interfaces, res1.IPs, res1.Routes)
	}
	eth0 := kerneltest.Run(t, "ip", "-n", ns1, "addr", "show", "eth0")
	if !strings.Contains(eth0, "inet "+ip1.String()) || !strings.Contains(eth0, "mtu 1450") {
		t.Errorf("eth0 in the container:\n%s", eth0)
	}
	if v := strings.TrimSpace(kerneltest.NsRun(t, ns1, "cat", "/proc/sys/net/core/somaxconn")); v != "512" {
		t.Errorf("tuning (chained after flatmesh) did not apply: somaxconn = %s", v)
	}
	kerneltest.NsRun(t, ns1, "ping", "-c", "2", "-W", "2", ip2.Addr().String())
	kerneltest.NsRun(t, ns2, "ping", "-c", "2", "-W", "2", ip1.Addr().String())
	named := false
	for _, c := range containersOf(t, r.l, "h1") {
		named = named || (c.Name == "web1" && c.IP == ip1.String())
	}
	if !named {
		t.Errorf("h1 does not list web1 (K8S_POD_NAME) at %s: %+v", ip1, containersOf(t, r.l, "h1"))
	}

	again, _ := cniAdd(t, r, "h1", "fmnet", ns1, "IgnoreUnknown=1;K8S_POD_NAME=web1")
	if a, b := mustJSON(t, again), mustJSON(t, res1); a != b {
		t.Errorf("second ADD answered\n%s\nthe first\n%s", a, b)
	}
	for _, h := range []struct{ host, ns string }{{"h1", ns1}, {"h2", ns2}} {
		if out, err := r.cnitoolOn(h.host, "check", "fmnet", kerneltest.NetnsPath(h.ns), ""); err != nil {
			t.Errorf("check on %s: %v\n%s", h.host, err, out)
		}
	}
	drift := []struct {
		name  string
		cmd   []string
		words string
	}{
		{"default route deleted", []string{"-n", ns1, "route", "del", "default"}, "route 0.0.0.0/0 via"},
		{"address deleted", []string{"-n", ns1, "addr", "del", ip1.String(), "dev", "eth0"}, "lacks its address " + ip1.String()},
		{"interface deleted", []string{"-n", ns1, "link", "del", "eth0"}, "is missing"},
	}
	for _, d := range drift {
		kerneltest.Run(t, "ip", d.cmd...)
		out, err := r.cnitoolOn("h1", "check", "fmnet", kerneltest.NetnsPath(ns1), "")
		if err == nil || !strings.Contains(out, d.words) || !strings.Contains(out, "ADD the container again") {
			t.Errorf("%s: check said (err %v) %q, want it to name %q", d.name, err, out, d.words)
		}
		if _, again := cniAdd(t, r, "h1", "fmnet", ns1, ""); again != ip1 {
			t.Errorf("%s: repairing ADD gave %s, want %s", d.name, again, ip1)
		}
		if out, err := r.cnitoolOn("h1", "check", "fmnet", kerneltest.NetnsPath(ns1), ""); err != nil {
			t.Errorf("%s: check after the repairing ADD: %v\n%s", d.name, err, out)
		}
	}
	kerneltest.NsRun(t, ns1, "ping", "-c", "1", "-W", "2", ip2.Addr().String())

	for i := 0; i < 2; i++ { // DEL is idempotent
		for _, h := range []struct{ host, ns string }{{"h1", ns1}, {"h2", ns2}} {
			if out, err := r.cnitoolOn(h.host, "del", "fmnet", kerneltest.NetnsPath(h.ns), ""); err != nil {
				t.Fatalf("del #%d on %s: %v\n%s", i+1, h.host, err, out)
			}
		}
	}
	if out, _ := kerneltest.Output("ip", "-n", ns1, "link", "show", "eth0"); !strings.Contains(out, "does not exist") {
		t.Errorf("eth0 still in the container after DEL: %s", out)
	}
	// The container goes first (its namespace is deleted), DEL comes later.
	gone := kerneltest.Netns(t, "cn")
	cniAdd(t, r, "h1", "fmnet", gone, "")
	kerneltest.Run(t, "ip", "netns", "del", gone)
	if out, err := r.cnitoolOn("h1", "del", "fmnet", kerneltest.NetnsPath(gone), ""); err != nil {
		t.Errorf("DEL of a container whose namespace is gone: %v\n%s", err, out)
	}
	if u1, u2 := mustUsed(t, r.l, "h1"), mustUsed(t, r.l, "h2"); u1 != used1 || u2 != used2 {
		t.Errorf("after DEL h1 holds %d addresses (before %d), h2 %d (before %d)", u1, used1, u2, used2)
	}
}

func testCNIDelAgentDown(t *testing.T, r *cniRig) {
	used := mustUsed(t, r.l, "h2")
	ns := kerneltest.Netns(t, "cn")
	_, ip := cniAdd(t, r, "h2", "fmnet", ns, "")
	if n := mustUsed(t, r.l, "h2"); n != used+1 {
		t.Fatalf("h2 holds %d addresses after ADD, want %d", n, used+1)
	}
	restartAgent(t, r.l, "h2", func() {
		out, err := r.cnitoolOn("h2", "add", "fmnet", kerneltest.NetnsPath(kerneltest.Netns(t, "cn")), "")
		if err == nil || !strings.Contains(out, "cannot reach the flatmesh agent") || !strings.Contains(out, "systemctl start flatmesh") {
			t.Errorf("ADD without the agent: err %v, said %q", err, out)
		}
		out, err = r.cnitoolOn("h2", "del", "fmnet", kerneltest.NetnsPath(ns), "")
		if err != nil {
			t.Fatalf("DEL without the agent failed: %v\n%s", err, out)
		}
		if !strings.Contains(out, "the agent releases its address when it starts") {
			t.Errorf("DEL without the agent said %q", out)
		}
		if out, _ := kerneltest.Output("ip", "-n", ns, "link", "show", "eth0"); !strings.Contains(out, "does not exist") {
			t.Errorf("eth0 (%s) still in the container after DEL without the agent: %s", ip, out)
		}
	})
	start := time.Now()
	waitUsed(t, r.l, "h2", used, 30*time.Second)
	t.Logf("FIGURE: address of a container DELeted while the agent was down released %s after the agent answered again",
		time.Since(start).Round(time.Millisecond))
}

func testCNIGCStatus(t *testing.T, r *cniRig) {
	h1, _ := r.l.Host("h1")
	cfg := libcni.NewCNIConfigWithCacheDir([]string{r.binDir}, t.TempDir(), nil)
	list, err := libcni.ConfListFromBytes([]byte(fmgcConflist(h1.Socket)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vi, err := cfg.GetVersionInfo(ctx, "flatmesh")
	if err != nil || strings.Join(vi.SupportedVersions(), ",") != "0.4.0,1.0.0,1.1.0" {
		t.Errorf("VERSION: %v %v", vi, err)
	}
	if err := cfg.GetStatusNetworkList(ctx, list); err != nil {
		t.Fatalf("STATUS with the agent up: %v", err)
	}
	used := mustUsed(t, r.l, "h1")
	keep, drop, other := kerneltest.Netns(t, "cn"), kerneltest.Netns(t, "cn"), kerneltest.Netns(t, "cn")
	_, keepIP := cniAdd(t, r, "h1", "fmgc", keep, "")
	cniAdd(t, r, "h1", "fmgc", drop, "")
	_, otherIP := cniAdd(t, r, "h1", "fmnet", other, "") // another network: GC of fmgc leaves it alone
	t.Cleanup(func() { _, _ = r.cnitoolOn("h1", "del", "fmnet", kerneltest.NetnsPath(other), "") })
	err = cfg.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{
		{ContainerID: cnitoolID(kerneltest.NetnsPath(keep)), IfName: "eth0"},
	}})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	if out, _ := kerneltest.Output("ip", "-n", drop, "link", "show", "eth0"); !strings.Contains(out, "does not exist") {
		t.Errorf("GC left the unlisted attachment: %s", out)
	}
	if n := mustUsed(t, r.l, "h1"); n != used+2 {
		t.Errorf("after GC h1 holds %d addresses, want %d (the listed one and the other network's)", n, used+2)
	}
	kerneltest.NsRun(t, keep, "ping", "-c", "1", "-W", "2", otherIP.Addr().String())
	if out, err := r.cnitoolOn("h1", "del", "fmgc", kerneltest.NetnsPath(keep), ""); err != nil {
		t.Fatalf("del %s: %v\n%s", keepIP, err, out)
	}

	restartAgent(t, r.l, "h1", func() {
		err := cfg.GetStatusNetworkList(ctx, list)
		var te *types.Error
		if !errors.As(err, &te) || te.Code != 50 || !strings.Contains(te.Msg, "cannot reach the flatmesh agent") {
			t.Errorf("STATUS with the agent down: %v, want code 50 naming the agent", err)
		}
	})
	if err := cfg.GetStatusNetworkList(ctx, list); err != nil {
		t.Errorf("STATUS with the agent back: %v", err)
	}
}

// podmanHost is one lab host's podman: its own storage, run root, temp
// dir and network configuration dir, CNI backend, run in the rig's mount
// namespace; the machine's podman configuration is not read.
type podmanHost struct {
	r               *cniRig
	host            string
	conf, root, run string
}

func newPodman(t *testing.T, r *cniRig, host, image string) *podmanHost {
	t.Helper()
	h, err := r.l.Host(host)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(r.dir, "podman", host)
	p := &podmanHost{r: r, host: host, conf: filepath.Join(dir, "containers.conf"), root: filepath.Join(dir, "root"), run: filepath.Join(dir, "run")}
	r.writeConf(t, filepath.Join(dir, "net"), "fmnet.conflist", fmnetConflist(h.Socket))
	r.writeConf(t, dir, "containers.conf", `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "`+filepath.Join(dir, "events.log")+`"
tmp_dir = "`+filepath.Join(dir, "tmp")+`"
[network]
network_backend = "cni"
cni_plugin_dirs = ["`+r.binDir+`", "`+debianPlugins+`"]
network_config_dir = "`+filepath.Join(dir, "net")+`"
`)
	t.Cleanup(func() {
		if out, err := p.podman("rm", "--all", "--force", "--time", "0"); err != nil {
			t.Errorf("podman rm on %s: %v\n%s", host, err, out)
		}
	})
	if out, err := p.podman("import", image, "localhost/fmbusybox"); err != nil {
		t.Fatalf("podman import on %s: %v\n%s", host, err, out)
	}
	return p
}

func (p *podmanHost) podman(args ...string) (string, error) {
	base := []string{"--root", p.root, "--runroot", p.run, "--storage-driver", "vfs"}
	return p.r.run(p.host, []string{"CONTAINERS_CONF=" + p.conf}, "podman", append(base, args...)...)
}

func (p *podmanHost) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.podman(args...)
	if err != nil {
		t.Fatalf("podman %s on %s: %v\n%s", strings.Join(args, " "), p.host, err, out)
	}
	return strings.TrimSpace(out)
}

func (p *podmanHost) ip(t *testing.T, name string) netip.Addr {
	t.Helper()
	s := p.must(t, "inspect", "--format", "{{(index .NetworkSettings.Networks \"fmnet\").IPAddress}}", name)
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("podman inspect %s: %q", name, s)
	}
	return a
}

func testCNIPodman(t *testing.T, r *cniRig) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("skipping: podman is not installed (.ci/run installs it)")
	}
	image := filepath.Join(r.dir, "busybox.tar")
	busyboxTar(t, image)
	p1, p2 := newPodman(t, r, "h1", image), newPodman(t, r, "h2", image)
	used1, used2 := mustUsed(t, r.l, "h1"), mustUsed(t, r.l, "h2")

	start := time.Now()
	p1.must(t, "run", "-d", "--name", "web1", "--network", "fmnet", "-p", "18080:8080", "localhost/fmbusybox",
		"sh", "-c", "mkdir -p /w && echo hello-from-web1 > /w/index.html && exec httpd -f -p 8080 -h /w")
	t.Logf("FIGURE: podman run -d (flatmesh, tuning, portmap) took %s", time.Since(start).Round(time.Millisecond))
	p2.must(t, "run", "-d", "--name", "client2", "--network", "fmnet", "localhost/fmbusybox", "sleep", "600")
	ip1, ip2 := p1.ip(t, "web1"), p2.ip(t, "client2")
	p2.must(t, "exec", "client2", "ping", "-c", "2", "-W", "2", ip1.String())
	p1.must(t, "exec", "web1", "ping", "-c", "2", "-W", "2", ip2.String())
	if out := p2.must(t, "exec", "client2", "sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc "+ip1.String()+" 8080"); !strings.Contains(out, "hello-from-web1") {
		t.Errorf("client2 -> web1:8080 across hosts: %q", out)
	}
	listed := false
	for _, c := range containersOf(t, r.l, "h1") {
		listed = listed || (c.Name == "web1" && strings.HasPrefix(c.IP, ip1.String()+"/"))
	}
	if !listed {
		t.Errorf("h1's agent does not list podman's web1 at %s", ip1)
	}

	// The published port (portmap, chained after flatmesh) from host h2.
	h1, _ := r.l.Host("h1")
	h2, _ := r.l.Host("h2")
	if body := httpGetIn(t, h2.Netns, netip.AddrPortFrom(h1.Addr(), 18080)); !strings.Contains(body, "hello-from-web1") {
		t.Errorf("h2 -> h1:18080 (published by portmap): %q", body)
	}

	// podman rm while h2's agent is down: DEL succeeds, and the address
	// is released once the agent is back.
	restartAgent(t, r.l, "h2", func() {
		p2.must(t, "rm", "--force", "--time", "0", "client2")
	})
	waitUsed(t, r.l, "h2", used2, 30*time.Second)
	p1.must(t, "rm", "--force", "--time", "0", "web1")
	if n := mustUsed(t, r.l, "h1"); n != used1 {
		t.Errorf("after podman rm h1 holds %d addresses, want %d", n, used1)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// httpGetIn sends an HTTP/1.0 GET from inside a namespace and returns the
// whole answer.
func httpGetIn(t *testing.T, netns string, addr netip.AddrPort) string {
	t.Helper()
	var body []byte
	err := kernel.InNetns(lab.NetnsPath(netns), func() error {
		c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			return err
		}
		body, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		t.Fatalf("GET http://%s from %s: %v", addr, netns, err)
	}
	return string(body)
}

// TestRootCNIFlat: in flat mode the CNI path gets LAN addresses (ARP-probed,
// as attach does), the LAN router as gateway, and reaches the router and a
// container on the other host.
func TestRootCNIFlat(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 2, Mode: lab.ModeFlat})
	r := newCNIRig(t, l)
	pm, ok := l.Plain()
	if !ok {
		t.Fatal("the flat lab has no router machine")
	}
	ns1, ns2 := kerneltest.Netns(t, "cf"), kerneltest.Netns(t, "cf")
	res1, ip1 := cniAdd(t, r, "h1", "fmnet", ns1, "")
	_, ip2 := cniAdd(t, r, "h2", "fmnet", ns2, "")
	if !l.FlatRange().Contains(ip1.Addr()) || !l.FlatRange().Contains(ip2.Addr()) {
		t.Errorf("addresses %s, %s are outside the flat range %s", ip1, ip2, l.FlatRange())
	}
	if gw := res1.IPs[0].Gateway.String(); gw != pm.Addr.Addr().String() {
		t.Errorf("gateway %s, want the LAN router %s", gw, pm.Addr.Addr())
	}
	kerneltest.NsRun(t, ns1, "ping", "-c", "2", "-W", "2", pm.Addr.Addr().String())
	kerneltest.NsRun(t, ns1, "ping", "-c", "2", "-W", "2", ip2.Addr().String())
	if out, err := r.cnitoolOn("h1", "check", "fmnet", kerneltest.NetnsPath(ns1), ""); err != nil {
		t.Errorf("check: %v\n%s", err, out)
	}
	for _, h := range []struct{ host, ns string }{{"h1", ns1}, {"h2", ns2}} {
		if out, err := r.cnitoolOn(h.host, "del", "fmnet", kerneltest.NetnsPath(h.ns), ""); err != nil {
			t.Errorf("del on %s: %v\n%s", h.host, err, out)
		}
	}
}
