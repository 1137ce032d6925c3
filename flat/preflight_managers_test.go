package flat

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestManagersDetected(t *testing.T) {
	nmcli := func(out string) func() (string, error) { return func() (string, error) { return out, nil } }
	noNmcli := func() (string, error) { return "", errors.New("nmcli: not found") }
	cases := []struct {
		name  string
		files map[string]string
		nmcli func() (string, error)
		want  string // "" = accepted
	}{
		{"nothing runs", nil, noNmcli, ""},
		{"NM device file managed", map[string]string{"run/NetworkManager/devices/4": "[device]\nmanaged=true\n"}, noNmcli, "NetworkManager manages eth0"},
		{"NM device file unmanaged", map[string]string{"run/NetworkManager/devices/4": "[device]\nmanaged=false\n"}, noNmcli, ""},
		{"NM nmcli connected", map[string]string{"run/NetworkManager/": ""}, nmcli("lo:unmanaged\neth0:connected\n"), "nmcli device set eth0 managed no"},
		{"NM nmcli unmanaged", map[string]string{"run/NetworkManager/": ""}, nmcli("eth0:unmanaged\n"), ""},
		{"NM nmcli does not list it", map[string]string{"run/NetworkManager/": ""}, nmcli("eth1:connected\n"), ""},
		{"NM runs, cannot tell", map[string]string{"run/NetworkManager/": ""}, noNmcli, "cannot tell whether it manages eth0"},
		{"networkd configured", map[string]string{"run/systemd/netif/links/4": "# This is private data.\nADMIN_STATE=configured\nOPER_STATE=routable\n"}, noNmcli, "systemd-networkd manages eth0 (ADMIN_STATE=configured)"},
		{"networkd configuring", map[string]string{"run/systemd/netif/links/4": "ADMIN_STATE=configuring\n"}, noNmcli, "Unmanaged=yes"},
		{"networkd unmanaged", map[string]string{"run/systemd/netif/links/4": "ADMIN_STATE=unmanaged\n"}, noNmcli, ""},
		{"networkd manages another link", map[string]string{"run/systemd/netif/links/7": "ADMIN_STATE=configured\n"}, noNmcli, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := managerCheck{Root: fakeRoot(t, c.files), NMDeviceState: c.nmcli}
			err := m.check("eth0", 4)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}
