package flat

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSysfsWireless(t *testing.T) {
	root := t.TempDir()
	mk := func(name, index, mac string, subs ...string) {
		dir := filepath.Join(root, name)
		for _, s := range subs {
			if err := os.MkdirAll(filepath.Join(dir, s), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, "ifindex"), []byte(index+"\n"), 0o644)
		_ = os.WriteFile(filepath.Join(dir, "address"), []byte(mac+"\n"), 0o644)
	}
	mk("wlan0", "3", "aa:bb:cc:dd:ee:01", "wireless")
	mk("wlp2s0", "4", "aa:bb:cc:dd:ee:02", "phy80211")
	mk("eth0", "2", "aa:bb:cc:dd:ee:03")
	for _, c := range []struct {
		name  string
		index int
		mac   string
		want  bool
	}{
		{"wlan0", 3, "aa:bb:cc:dd:ee:01", true},
		{"wlp2s0", 4, "aa:bb:cc:dd:ee:02", true},
		{"eth0", 2, "aa:bb:cc:dd:ee:03", false},
		{"wlan0", 7, "aa:bb:cc:dd:ee:01", false}, // another namespace's wlan0
		{"wlan0", 3, "aa:bb:cc:dd:ee:99", false},
		{"nothere", 1, "aa:bb:cc:dd:ee:01", false},
	} {
		if got := sysfsWireless(root, c.name, c.index, c.mac); got != c.want {
			t.Errorf("%s/%d/%s: wireless = %v, want %v", c.name, c.index, c.mac, got, c.want)
		}
	}
}
