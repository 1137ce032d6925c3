package lab

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDescriptionRoundTrip(t *testing.T) {
	dir := t.TempDir()
	d := testDescription(t, ModeFlat, 2)
	d.WorkDir = dir
	d.Hosts[0].PID = 4242
	d.Containers = []Container{{Name: "c11", Host: "h1", Netns: "lt-h1c1",
		IP: netip.MustParsePrefix("172.16.45.2/24"), Gateway: netip.MustParseAddr("172.16.0.1"), MTU: 1500}}
	d.Namespaces = []string{"lt-sw", "lt-pm", "lt-h1", "lt-h2", "lt-h1c1"}
	if err := saveDescription(d); err != nil {
		t.Fatal(err)
	}
	got, err := loadDescription(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hosts[0].PID != 4242 || got.Containers[0] != d.Containers[0] || *got.Plain != *d.Plain ||
		!slices.Equal(got.Namespaces, d.Namespaces) || got.FlatRange != d.FlatRange ||
		!slices.Equal(got.Hosts[1].Args, d.Hosts[1].Args) || got.Hosts[1].Gateway != d.Hosts[1].Gateway {
		t.Fatalf("round trip changed the description:\n%+v\n%+v", got, d)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("save left temp files: %v", ents)
	}
}

func TestLoadDescriptionErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadDescription(dir); !errors.Is(err, ErrNoLab) {
		t.Fatalf("missing lab.json: %v", err)
	}
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("{not json")
	if _, err := loadDescription(dir); err == nil || errors.Is(err, ErrNoLab) {
		t.Fatalf("corrupt lab.json: %v", err)
	}
	write(`{"version": 99, "name": "lt"}`)
	if _, err := loadDescription(dir); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("future version: %v", err)
	}
	write(`{"version": 1, "name": "../../etc"}`)
	if _, err := loadDescription(dir); err == nil || !strings.Contains(err.Error(), "invalid lab name") {
		t.Fatalf("bad name: %v", err)
	}
}

func TestWorkDirLifecycle(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "lab")
	if err := checkWorkDir(dir); err != nil {
		t.Fatalf("missing dir should be created: %v", err)
	}
	d := testDescription(t, ModeVXLAN, 2)
	d.WorkDir = dir
	for i := range d.Hosts { // re-plan under the real dir
		h, _ := d.planHost(i + 1)
		d.Hosts[i] = h
		if err := os.MkdirAll(h.StateDir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	d.KeyFile, d.KeyGenerated = filepath.Join(dir, "gossip.key"), true
	if err := os.WriteFile(d.KeyFile, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := saveDescription(d); err != nil {
		t.Fatal(err)
	}
	if err := checkWorkDir(dir); err == nil {
		t.Fatal("a non-empty work dir must be refused")
	}
	if err := removeWorkDir(d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("work dir still there: %v", err)
	}
	if err := removeWorkDir(d); err != nil {
		t.Fatalf("second removal must be a no-op: %v", err)
	}
	// A file the lab did not make is kept, and said so.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := removeWorkDir(d); err == nil || !strings.Contains(err.Error(), "did not make") {
		t.Fatalf("foreign file: %v", err)
	}
}

func TestWithSocket(t *testing.T) {
	got := withSocket([]string{"peers", "--json"}, "/s")
	if !slices.Equal(got, []string{"peers", "--json", "--socket", "/s"}) {
		t.Fatal(got)
	}
	got = withSocket([]string{"attach", "--", "-weird"}, "/s")
	if !slices.Equal(got, []string{"attach", "--socket", "/s", "--", "-weird"}) {
		t.Fatal(got)
	}
}

func TestAgentEnv(t *testing.T) {
	got := agentEnv([]string{"PATH=/bin", "FLATMESH_JOIN=1.2.3.4", "HOME=/root", "FLATMESH_MODE=flat"})
	if !slices.Equal(got, []string{"PATH=/bin", "HOME=/root"}) {
		t.Fatal(got)
	}
}

func TestParsePing(t *testing.T) {
	iputils := `PING 10.213.0.66 (10.213.0.66) 56(84) bytes of data.

--- 10.213.0.66 ping statistics ---
3 packets transmitted, 2 received, 33.3333% packet loss, time 404ms
rtt min/avg/max/mdev = 0.051/0.250/0.449/0.199 ms
`
	sent, recv, avg, ok := parsePing(iputils)
	if !ok || sent != 3 || recv != 2 || avg != 250*time.Microsecond {
		t.Fatalf("iputils: %d %d %s %v", sent, recv, avg, ok)
	}
	lost := "--- 10.1.1.1 ping statistics ---\n3 packets transmitted, 0 received, 100% packet loss, time 2030ms\n"
	if sent, recv, avg, ok = parsePing(lost); !ok || sent != 3 || recv != 0 || avg != 0 {
		t.Fatalf("all lost: %d %d %s %v", sent, recv, avg, ok)
	}
	busybox := "3 packets transmitted, 3 packets received, 0% packet loss\nround-trip min/avg/max = 0.1/0.2/0.3 ms\n"
	if _, recv, _, ok = parsePing(busybox); !ok || recv != 3 {
		t.Fatalf("busybox: %d %v", recv, ok)
	}
	if _, _, _, ok = parsePing("ping: connect: Network is unreachable\n"); ok {
		t.Fatal("an error message is no summary")
	}
}

func TestPingPlan(t *testing.T) {
	d := testDescription(t, ModeFlat, 2)
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	d.Containers = []Container{
		{Name: "c11", Host: "h1", Netns: "lt-h1c1", IP: p("172.16.45.1/24")},
		{Name: "c12", Host: "h1", Netns: "lt-h1c2", IP: p("172.16.45.2/24")},
		{Name: "c21", Host: "h2", Netns: "lt-h2c1", IP: p("172.16.45.17/24")},
	}
	plan := pingPlan(d)
	// 3*2 container pairs + h1->c21, h2->c11, h2->c12 + pm<->3 containers.
	if len(plan) != 6+3+6 {
		t.Fatalf("%d pings: %+v", len(plan), plan)
	}
	seen := map[string]bool{}
	for _, r := range plan {
		seen[r.From+">"+r.To] = true
		if r.From == "h1" && (r.To == "c11" || r.To == "c12") {
			t.Fatal("hosts ping only remote containers")
		}
	}
	for _, k := range []string{"c11>c21", "c21>c12", "h1>c21", "h2>c11", "pm>c12", "c21>pm"} {
		if !seen[k] {
			t.Errorf("plan lacks %s", k)
		}
	}
}

func TestParseAttach(t *testing.T) {
	var c Container
	err := parseAttach([]byte(`{"ip":"10.213.0.2/26","gateway":"10.213.0.1","ifname":"eth0","mac":"aa:bb:cc:dd:ee:ff","mtu":1450,"netns":"/run/netns/x","name":"c11"}`), &c)
	if err != nil || c.IP != netip.MustParsePrefix("10.213.0.2/26") || c.Gateway != netip.MustParseAddr("10.213.0.1") ||
		c.MTU != 1450 || c.IfName != "eth0" || c.MAC != "aa:bb:cc:dd:ee:ff" {
		t.Fatalf("%+v %v", c, err)
	}
	if err := parseAttach([]byte(`{"ip":"10.213.0.2"}`), &c); err == nil {
		t.Fatal("an ip without prefix length must be refused")
	}
	if err := parseAttach([]byte(`[]`), &c); err == nil {
		t.Fatal("wrong JSON shape must be refused")
	}
}

func TestLastLines(t *testing.T) {
	got := lastLines("a\nb\nc\n", 2)
	if got != "    b\n    c" {
		t.Fatalf("%q", got)
	}
	if !strings.Contains(tail("/nonexistent/log", 3), "no log") {
		t.Fatal("missing log")
	}
}

func TestAgentCommand(t *testing.T) {
	plain := agentCommand(ModeVXLAN, "/run/netns/x-h1", "/bin/fm", []string{"agent", "--name", "h1"})
	if got := strings.Join(plain, " "); got != "--net=/run/netns/x-h1 -- /bin/fm agent --name h1" {
		t.Errorf("vxlan: %q", got)
	}
	wg := strings.Join(agentCommand(ModeWireGuard, "/run/netns/x-h1", "/bin/fm", []string{"agent"}), " ")
	for _, want := range []string{"--net=/run/netns/x-h1 -- unshare --mount --propagation slave", "mount -t tmpfs", "/run/wireguard", `exec "$0" "$@" /bin/fm agent`} {
		if !strings.Contains(wg, want) {
			t.Errorf("wireguard command lacks %q: %s", want, wg)
		}
	}
}
