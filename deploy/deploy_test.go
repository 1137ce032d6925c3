// Package deploy_test checks the deployment files against the code: the
// example configuration lists every agent setting and loads, and the systemd
// unit passes systemd-analyze.
package deploy_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/flatmesh/flatmesh/agent"
	"github.com/spf13/pflag"
)

const example = "flatmesh.hcl.example"

// attrRE matches a setting line of the example, active or commented out.
var attrRE = regexp.MustCompile(`(?m)^(#\s*)?([a-z_]+)\s*=\s*(.+)$`)

func exampleText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// agentSettings lists the HCL names of the agent's settings (flag names
// with '_' for '-'), without "config", which is not a file setting.
func agentSettings() []string {
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	agent.RegisterFlags(fs)
	var out []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "config" {
			out = append(out, strings.ReplaceAll(f.Name, "-", "_"))
		}
	})
	return out
}

func TestExampleConfigListsEverySetting(t *testing.T) {
	text := exampleText(t)
	var listed []string
	for _, m := range attrRE.FindAllStringSubmatch(text, -1) {
		listed = append(listed, m[2])
	}
	known := agentSettings()
	for _, s := range known {
		if !slices.Contains(listed, s) {
			t.Errorf("setting %q is missing from %s", s, example)
		}
	}
	for _, s := range listed {
		if !slices.Contains(known, s) {
			t.Errorf("%s lists %q, which the agent does not know", example, s)
		}
	}
}

// loadConfig loads text as the agent's config file, with eth1 holding
// 192.168.56.11/24 and the key file pointed at a readable temp file.
func loadConfig(t *testing.T, text string) (agent.Config, error) {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(key, []byte("test key file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text = regexp.MustCompile(`(?m)^key_file\s*=.*$`).ReplaceAllString(text, `key_file = "`+key+`"`)
	path := filepath.Join(dir, "flatmesh.hcl")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	agent.RegisterFlags(fs)
	if err := fs.Parse([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	return agent.Load(agent.LoadOptions{
		Flags:    fs,
		Getenv:   func(string) string { return "" },
		Hostname: func() (string, error) { return "node1", nil },
		Interfaces: func(name string) ([]netip.Prefix, error) {
			return []netip.Prefix{netip.MustParsePrefix("192.168.56.11/24")}, nil
		},
	})
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := loadConfig(t, exampleText(t))
	if err != nil {
		t.Fatalf("the example as shipped does not load: %v", err)
	}
	if c.Mode != "vxlan" || c.Iface != "eth1" || c.Cluster != "flatmesh" || len(c.Join) != 1 || !strings.HasPrefix(c.Join[0], "192.168.56.11") {
		t.Fatalf("example loaded as %+v", c)
	}
}

// Each commented-out value, uncommented on its own, must parse with the
// right type (validation against the other settings may still refuse it).
func TestExampleConfigCommentedValuesParse(t *testing.T) {
	text := exampleText(t)
	bad := []string{"unknown setting", "parsing config file", "want a string", "want a number",
		"want true or false", "want a list"}
	for _, m := range attrRE.FindAllStringSubmatch(text, -1) {
		if m[1] == "" {
			continue
		}
		line := m[0]
		t.Run(m[2], func(t *testing.T) {
			_, err := loadConfig(t, strings.Replace(text, line, strings.TrimLeft(line, "# "), 1))
			if err == nil {
				return
			}
			for _, b := range bad {
				if strings.Contains(err.Error(), b) {
					t.Fatalf("uncommenting %q: %v", line, err)
				}
			}
		})
	}
}

func TestSystemdUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("skipping: systemd-analyze is not installed (.ci/run installs systemd)")
	}
	unit, err := os.ReadFile(filepath.Join("systemd", "flatmesh.service"))
	if err != nil {
		t.Fatal(err)
	}
	// verify insists that ExecStart's program exists: point it at a real
	// one; the directives are what is checked.
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/flatmesh ", "/bin/true ")
	path := filepath.Join(t.TempDir(), "flatmesh.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "Unknown") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"KillMode=mixed", "Restart=on-failure", "RuntimeDirectory=flatmesh",
		"StateDirectory=flatmesh", "CAP_NET_ADMIN", "CAP_NET_RAW", "After=network-online.target",
		"ExecReload=/bin/kill -HUP $MAINPID", "--config /etc/flatmesh/flatmesh.hcl",
		"Type=notify", "WatchdogSec=", "ProtectSystem=strict"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

// The Vagrantfile must be valid Ruby and pass `vagrant validate`, and the
// agent config that provision.sh (the script it runs, which the systemd rig
// runs for real) writes must load.
func TestVagrantfile(t *testing.T) {
	vf := filepath.Join("vagrant", "Vagrantfile")
	if ruby, err := exec.LookPath("ruby"); err == nil {
		if out, err := exec.Command(ruby, "-c", vf).CombinedOutput(); err != nil {
			t.Fatalf("ruby -c Vagrantfile: %v\n%s", err, out)
		}
	} else {
		t.Log("ruby is not installed: Vagrantfile syntax not checked")
	}
	text, err := os.ReadFile(vf)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`path: PROVISION`, `args: [name, ip, SEED, IFACE]`, `destination: "/tmp/flatmesh.deb"`, `destination: "/tmp/gossip.key"`} {
		if !strings.Contains(string(text), want) {
			t.Errorf("the Vagrantfile lacks %q (provision.sh expects it)", want)
		}
	}
	out, err := exec.Command("bash", filepath.Join("vagrant", "provision.sh"), "--print-config", "fm2", "192.168.56.12", "192.168.56.11", "eth1").CombinedOutput()
	if err != nil {
		t.Fatalf("provision.sh --print-config: %v\n%s", err, out)
	}
	c, err := loadConfig(t, string(out))
	if err == nil && (c.Iface != "eth1" || c.Advertise.Addr().String() != "192.168.56.12" || len(c.Join) != 1 || c.Join[0] != "192.168.56.11:7496") {
		err = fmt.Errorf("loaded as iface %q advertise %s join %v", c.Iface, c.Advertise, c.Join)
	}
	if err != nil {
		t.Fatalf("the config provision.sh writes: %v\n%s", err, out)
	}
	seed, err := exec.Command("bash", filepath.Join("vagrant", "provision.sh"), "--print-config", "fm1", "192.168.56.11", "192.168.56.11", "eth1").CombinedOutput()
	if err != nil || strings.Contains(string(seed), "join") {
		t.Fatalf("the seed must join nobody: %v\n%s", err, seed)
	}
}

// vagrant validate loads the Vagrantfile with Vagrant itself (no provider
// or box needed).
func TestVagrantValidate(t *testing.T) {
	vagrant, err := exec.LookPath("vagrant")
	if err != nil {
		t.Skip("skipping: vagrant is not installed (Debian package vagrant; .ci/run installs it)")
	}
	dir := t.TempDir()
	validate := func(env ...string) (string, error) {
		// --ignore-provider: no VirtualBox or libvirt here. Its own home and
		// dotfile dir, so the test leaves nothing behind.
		cmd := exec.Command(vagrant, "validate", "--ignore-provider")
		cmd.Dir = "vagrant"
		cmd.Env = append(os.Environ(), append(env, "VAGRANT_HOME="+filepath.Join(dir, "home"),
			"VAGRANT_DOTFILE_PATH="+filepath.Join(dir, "dot"), "VAGRANT_CHECKPOINT_DISABLE=1")...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// The file provisioners' sources must exist: validate sees a missing one.
	out, err := validate("FLATMESH_DEB="+filepath.Join(dir, "missing.deb"), "FLATMESH_GOSSIP_KEY="+filepath.Join(dir, "missing.key"))
	if err == nil || !strings.Contains(out, "missing.deb") {
		t.Fatalf("vagrant validate passed without the package: %v\n%s", err, out)
	}
	deb, key := filepath.Join(dir, "flatmesh_test_amd64.deb"), filepath.Join(dir, "gossip.key")
	for _, f := range []string{deb, key} {
		if err := os.WriteFile(f, []byte("placeholder: validate checks that the file exists\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err = validate("FLATMESH_DEB="+deb, "FLATMESH_GOSSIP_KEY="+key)
	if err != nil || !strings.Contains(out, "Vagrantfile validated successfully") {
		t.Fatalf("vagrant validate: %v\n%s", err, out)
	}
}
