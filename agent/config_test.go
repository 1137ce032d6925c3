package agent

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

type loadCase struct {
	args []string
	env  map[string]string
	hcl  string
}

func load(t *testing.T, lc loadCase) (Config, error) {
	t.Helper()
	dir := t.TempDir()
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	RegisterFlags(fs)
	args := append([]string{"--state-dir", dir, "--socket", filepath.Join(dir, "s.sock")}, lc.args...)
	if lc.hcl != "" {
		f := filepath.Join(dir, "flatmesh.hcl")
		if err := os.WriteFile(f, []byte(lc.hcl), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", f)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(LoadOptions{
		Flags:  fs,
		Getenv: func(k string) string { return lc.env[k] },
		Interfaces: func(name string) ([]netip.Prefix, error) {
			if name == "eth1" {
				return []netip.Prefix{netip.MustParsePrefix("fe80::1/64"), netip.MustParsePrefix("192.168.56.11/24")}, nil
			}
			return nil, os.ErrNotExist
		},
		Hostname: func() (string, error) { return "host-a", nil },
	})
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	hcl := `
name = "from-file"
cluster = "file-cluster"
mode = "vxlan"
advertise = "192.0.2.1"
insecure = true
join = ["192.0.2.7", "192.0.2.8:9000"]
vni = 77
`
	c, err := load(t, loadCase{hcl: hcl})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "from-file" || c.Cluster != "file-cluster" || c.VNI != 77 {
		t.Fatalf("file values not applied: %+v", c)
	}
	if got := strings.Join(c.Join, " "); got != "192.0.2.7:7496 192.0.2.8:9000" {
		t.Fatalf("join = %q, want default port filled in", got)
	}
	c, err = load(t, loadCase{hcl: hcl, env: map[string]string{"FLATMESH_NAME": "from-env", "FLATMESH_CLUSTER": "env-cluster"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "from-env" || c.Cluster != "env-cluster" {
		t.Fatalf("environment must beat the file: %+v", c)
	}
	c, err = load(t, loadCase{hcl: hcl, env: map[string]string{"FLATMESH_NAME": "from-env"}, args: []string{"--name", "from-flag"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "from-flag" || c.Cluster != "file-cluster" {
		t.Fatalf("flag must beat environment: %+v", c)
	}
}

func TestJoinListsAndDefaults(t *testing.T) {
	c, err := load(t, loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1", "--join", "192.0.2.2,192.0.2.3", "--join", "[2001:db8::1]:8000"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.2:7496", "192.0.2.3:7496", "[2001:db8::1]:8000"}
	if strings.Join(c.Join, " ") != strings.Join(want, " ") {
		t.Fatalf("join = %v, want %v", c.Join, want)
	}
	if c.Name != "host-a" || c.Bind.Port() != DefaultPort || c.Advertise.Port() != DefaultPort {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if c.BlockBits != 26 || c.Bridge != "flatmesh0" || c.CIDR.String() != "10.213.0.0/16" {
		t.Fatalf("overlay defaults not applied: %+v", c)
	}
	if DefaultPort == 7946 {
		t.Fatal("the default port must not be Docker Swarm's 7946")
	}
}

func TestAdvertiseFromIface(t *testing.T) {
	c, err := load(t, loadCase{args: []string{"--insecure", "--iface", "eth1"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Advertise.String() != "192.168.56.11:7496" {
		t.Fatalf("advertise = %s, want the first IPv4 of eth1", c.Advertise)
	}
}

func TestValidationErrors(t *testing.T) {
	keyDir := t.TempDir()
	cases := []struct {
		name string
		lc   loadCase
		want string
	}{
		{"unknown mode", loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1", "--mode", "ipip"}}, `invalid mode "ipip" (from flag --mode): must be one of vxlan, wireguard, flat`},
		{"bad cidr", loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1", "--cidr", "10.0.0.0/33"}}, `invalid cidr "10.0.0.0/33"`},
		{"cidr host bits", loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1", "--cidr", "10.0.0.1/16"}}, `did you mean 10.0.0.0/16`},
		{"bad advertise", loadCase{args: []string{"--insecure", "--advertise", "300.1.1.1"}}, `invalid advertise "300.1.1.1"`},
		{"bad join", loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1", "--join", "nohost"}}, `invalid join "nohost"`},
		{"env source named", loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1"}, env: map[string]string{"FLATMESH_VNI": "x"}}, `(from environment FLATMESH_VNI)`},
		{"no advertise", loadCase{args: []string{"--insecure"}}, `pass --advertise IP or --iface NIC`},
		{"missing iface", loadCase{args: []string{"--insecure", "--iface", "nope0"}}, `invalid iface "nope0"`},
		{"no key", loadCase{args: []string{"--advertise", "192.0.2.1"}}, `no gossip key`},
		{"unreadable key", loadCase{args: []string{"--advertise", "192.0.2.1", "--key-file", filepath.Join(keyDir, "missing")}}, `invalid key_file`},
		{"socket dir missing", loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1", "--socket", "/nonexistent-dir/x.sock"}}, `directory /nonexistent-dir does not exist`},
		{"flat needs range", loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1", "--mode", "flat", "--iface", "eth1"}}, `flat mode needs --flat-range`},
		{"unknown hcl attribute", loadCase{hcl: "nmae = \"x\"\n"}, `unknown setting "nmae"`},
		{"hcl wrong type", loadCase{hcl: "insecure = \"yes\"\n"}, `want true or false`},
		{"block size", loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1", "--block-size", "8"}}, `invalid block_size "8"`},
		{"log level", loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1", "--log-level", "loud"}}, `invalid log_level "loud"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.lc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestFingerprintCoversClusterWideSettings(t *testing.T) {
	base, err := load(t, loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1"}})
	if err != nil {
		t.Fatal(err)
	}
	other := base
	other.Name, other.Advertise = "b", netip.MustParseAddrPort("192.0.2.2:7496")
	if base.Fingerprint() != other.Fingerprint() {
		t.Fatal("per-host settings must not change the fingerprint")
	}
	other.VNI++
	if base.Fingerprint() == other.Fingerprint() {
		t.Fatal("the VNI is cluster-wide and must change the fingerprint")
	}
}

func TestWireGuardSettings(t *testing.T) {
	c, err := load(t, loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1", "--mode", "wireguard"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.WGPort != 51820 || c.WGKeepalive != 0 {
		t.Errorf("defaults: port %d keepalive %d", c.WGPort, c.WGKeepalive)
	}
	c, err = load(t, loadCase{hcl: "wg_port = 51000\nwg_persistent_keepalive = 25\n",
		env: map[string]string{"FLATMESH_WG_PORT": "52000"}, args: []string{"--insecure", "--advertise", "192.0.2.1", "--mode", "wireguard"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.WGPort != 52000 || c.WGKeepalive != 25 {
		t.Errorf("env over file: port %d keepalive %d", c.WGPort, c.WGKeepalive)
	}
	c, err = load(t, loadCase{env: map[string]string{"FLATMESH_WG_PORT": "52000"},
		args: []string{"--insecure", "--advertise", "192.0.2.1", "--wg-port", "53000", "--wg-persistent-keepalive", "5"}})
	if err != nil || c.WGPort != 53000 || c.WGKeepalive != 5 {
		t.Errorf("flag over env: %+v %v", c, err)
	}
	for _, args := range [][]string{{"--wg-port", "0"}, {"--wg-port", "70000"}, {"--wg-persistent-keepalive", "-1"}} {
		if _, err := load(t, loadCase{args: append([]string{"--insecure", "--advertise", "192.0.2.1"}, args...)}); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
