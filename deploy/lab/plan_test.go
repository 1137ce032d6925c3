package lab

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{}.withDefaults("/usr/local/bin/flatmesh")
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "fmlab" || o.Hosts != 3 || o.Mode != ModeVXLAN || o.ContainersPerHost != 2 ||
		o.GossipTiming != "local" || o.WorkDir != "/run/flatmesh-lab/fmlab" || o.Binary != "/usr/local/bin/flatmesh" {
		t.Fatalf("defaults: %+v", o)
	}
	if o.Timeout != 36*time.Second {
		t.Fatalf("timeout %s, want 36s for 3 hosts", o.Timeout)
	}
	o, err = Options{ContainersPerHost: NoContainers, Hosts: 5}.withDefaults("/bin/flatmesh")
	if err != nil || o.ContainersPerHost != 0 {
		t.Fatalf("NoContainers: %d, %v", o.ContainersPerHost, err)
	}
}

func TestOptionsValidation(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		self string
		want string
	}{
		{"test binary", Options{}, "/tmp/go-build1/lab.test", "Binary is required"},
		{"bad name", Options{Name: "Lab_1"}, "/bin/fm", `invalid lab name "Lab_1"`},
		{"name ends with dash", Options{Name: "ab-"}, "/bin/fm", "invalid lab name"},
		{"long name", Options{Name: "abcdefghijk"}, "/bin/fm", "too long"},
		{"long name, many hosts", Options{Name: "abcdefghij", Hosts: 12}, "/bin/fm", "too long"},
		{"mode", Options{Mode: "geneve"}, "/bin/fm", `invalid mode "geneve"`},
		{"hosts", Options{Hosts: 100}, "/bin/fm", "invalid hosts 100"},
		{"negative hosts", Options{Hosts: -2}, "/bin/fm", "invalid hosts -2"},
		{"containers", Options{ContainersPerHost: -5}, "/bin/fm", "invalid containers per host -5"},
		{"relative workdir", Options{WorkDir: "lab"}, "/bin/fm", "absolute"},
		{"relative binary", Options{Binary: "bin/flatmesh"}, "/bin/fm", "absolute"},
		{"key and insecure", Options{KeyFile: "/k", Insecure: true}, "/bin/fm", "exclusive"},
		{"timing", Options{GossipTiming: "wan"}, "/bin/fm", "gossip timing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.o.withDefaults(c.self)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	// The longest default-ish name that fits: 10 bytes with hosts and
	// containers under 10 ("abcdefghij-h9c9" is 15 bytes).
	if _, err := (Options{Name: "abcdefghij"}).withDefaults("/bin/fm"); err != nil {
		t.Fatalf("10-byte name refused: %v", err)
	}
}

func testDescription(t *testing.T, mode string, hosts int) *description {
	t.Helper()
	o, err := Options{Name: "lt", Mode: mode, Hosts: hosts, WorkDir: "/w", KeyFile: "/w/k"}.withDefaults("/bin/fm")
	if err != nil {
		t.Fatal(err)
	}
	d := newDescription(o)
	for i := 1; i <= hosts; i++ {
		h, err := d.planHost(i)
		if err != nil {
			t.Fatal(err)
		}
		d.Hosts = append(d.Hosts, h)
	}
	return d
}

func TestPlanHostVXLAN(t *testing.T) {
	d := testDescription(t, ModeVXLAN, 3)
	h := d.Hosts[1]
	if h.Name != "h2" || h.Netns != "lt-h2" || h.Underlay != netip.MustParsePrefix("10.99.0.2/24") || h.Gateway.IsValid() {
		t.Fatalf("host 2: %+v", h)
	}
	if h.Socket != "/w/h2/flatmesh.sock" || h.StateDir != "/w/h2/state" || h.LogFile != "/w/h2/agent.log" {
		t.Fatalf("host 2 files: %+v", h)
	}
	want := []string{"agent", "--name", "h2", "--bind", "10.99.0.2", "--iface", "eth0", "--mode", "vxlan",
		"--cluster", "lt", "--state-dir", "/w/h2/state", "--socket", "/w/h2/flatmesh.sock",
		"--gossip-timing", "local", "--log-level", "info",
		"--docker-plugin-dir", "/w/h2/plugins", "--docker-socket", "/w/h2/docker.sock", "--key-file", "/w/k"}
	if !slices.Equal(h.Args, want) {
		t.Fatalf("args\n got %q\nwant %q", h.Args, want)
	}
	if slices.Contains(h.Args, "--join") {
		t.Fatal("base args must not join")
	}
	if d.Plain != nil || d.FlatRange.IsValid() {
		t.Fatal("vxlan lab has no plain machine or flat range")
	}
}

func TestPlanHostFlat(t *testing.T) {
	d := testDescription(t, ModeFlat, 3)
	if d.Plain == nil || d.Plain.Netns != "lt-pm" || d.Plain.Addr != netip.MustParsePrefix("172.16.0.1/16") {
		t.Fatalf("plain machine: %+v", d.Plain)
	}
	wantAddr := []string{"172.16.44.254/16", "172.16.44.253/16", "172.16.44.252/16"}
	for i, h := range d.Hosts {
		if h.Underlay.String() != wantAddr[i] || h.Gateway != d.Plain.Addr.Addr() {
			t.Fatalf("host %d: %s via %s", i+1, h.Underlay, h.Gateway)
		}
		if d.FlatRange.Contains(h.Addr()) || !flatLAN.Contains(h.Addr()) {
			t.Fatalf("host %s must be on the LAN and outside the flat range", h.Underlay)
		}
		if !slices.Contains(h.Args, "--flat-range") || h.Args[slices.Index(h.Args, "--flat-range")+1] != "172.16.45.0/24" {
			t.Fatalf("flat args: %q", h.Args)
		}
	}
	if d.FlatRange.Contains(d.Plain.Addr.Addr()) || !flatLAN.Contains(d.FlatRange.Addr()) {
		t.Fatal("flat range must sit inside the LAN and hold no router address")
	}
}

func TestAgentArgsInsecureAndExtra(t *testing.T) {
	d := testDescription(t, ModeVXLAN, 1)
	d.Insecure, d.KeyFile, d.ExtraAgentArgs = true, "", []string{"--mtu", "1400"}
	args := d.agentArgs(d.Hosts[0])
	if !slices.Contains(args, "--insecure") || slices.Contains(args, "--key-file") {
		t.Fatalf("insecure args: %q", args)
	}
	if !slices.Equal(args[len(args)-2:], []string{"--mtu", "1400"}) {
		t.Fatalf("extra args must come last: %q", args)
	}
}

func TestNames(t *testing.T) {
	if got := containerName(1, 2); got != "c12" {
		t.Fatal(got)
	}
	if got := containerName(10, 3); got != "c10-3" {
		t.Fatal(got)
	}
	re := nsRegexp("lt")
	for _, n := range []string{"lt-sw", "lt-pm", "lt-h1", "lt-h12c3"} {
		if !re.MatchString(n) {
			t.Errorf("%s should be lab lt's", n)
		}
	}
	for _, n := range []string{"lt", "lt-h", "lt-h1-sw", "lt2-h1", "xlt-h1", "lt-h1c", "lt-swx", "lt-h1c1x"} {
		if re.MatchString(n) {
			t.Errorf("%s must not be lab lt's", n)
		}
	}
}

func TestTeardownOrder(t *testing.T) {
	d := &description{Name: "lt", Namespaces: []string{"lt-sw", "lt-h1", "lt-h2", "lt-h1c1"}}
	got := d.teardownOrder([]string{"lt-h1", "lt-h9", "other-h1", "lt-h9c1", "lt-sw"})
	want := []string{"lt-h9", "lt-h9c1", "lt-h1c1", "lt-h2", "lt-h1", "lt-sw"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	d.addNamespace("lt-h1")
	if len(d.Namespaces) != 4 {
		t.Fatal("addNamespace duplicated a name")
	}
}

func TestHostLookup(t *testing.T) {
	d := testDescription(t, ModeVXLAN, 2)
	for _, name := range []string{"h2", "lt-h2"} {
		h, err := d.hostByName(name)
		if err != nil || h.Index != 2 {
			t.Fatalf("%s: %v %v", name, h, err)
		}
	}
	if _, err := d.hostByName("h3"); err == nil || !strings.Contains(err.Error(), `no host "h3"`) {
		t.Fatalf("missing host: %v", err)
	}
	d.Containers = []Container{{Host: "h1"}, {Host: "h2"}, {Host: "h1"}}
	if d.containersOn("h1") != 2 || d.containersOn("h2") != 1 {
		t.Fatal("containersOn")
	}
}

func TestNextContainer(t *testing.T) {
	d := testDescription(t, ModeVXLAN, 2)
	l := newLab(d, nil, nil, 0)
	d.Namespaces = []string{"lt-h2c1"} // recorded, attach failed
	c, err := l.nextContainerLocked(&d.Hosts[1])
	if err != nil || c.Netns != "lt-h2c2" || c.Name != "c22" || c.Host != "h2" {
		t.Fatalf("next container: %+v %v", c, err)
	}
}
