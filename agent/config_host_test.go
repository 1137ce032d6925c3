package agent

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBracketedIPv6WithoutPort(t *testing.T) {
	c, err := load(t, loadCase{args: []string{"--insecure", "--bind", "[fd77::1]", "--join", "[fd77::2]", "--join", "[fd77::3]:8000"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Bind.String() != "[fd77::1]:7496" || c.Advertise.String() != "[fd77::1]:7496" {
		t.Fatalf("bind %s advertise %s", c.Bind, c.Advertise)
	}
	if strings.Join(c.Join, " ") != "[fd77::2]:7496 [fd77::3]:8000" {
		t.Fatalf("join %v", c.Join)
	}
	for _, bad := range []string{"[10.0.0.1]", "[fd77::1", "[]", "[::ffff:10.0.0.1]"} {
		if _, err := ParseHostPort(bad, DefaultPort); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCheckHost(t *testing.T) {
	local := HostCheck{LocalAddrs: func() ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("fd77::1")}, nil
	}}
	c, err := load(t, loadCase{args: []string{"--insecure", "--advertise", "192.0.2.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckHost(local); err != nil {
		t.Fatalf("held advertise refused: %v", err)
	}
	c.Advertise = netip.MustParseAddrPort("192.0.2.9:7496")
	if err := c.CheckHost(local); err == nil || !strings.Contains(err.Error(), "no local interface holds 192.0.2.9") {
		t.Fatalf("foreign advertise: %v", err)
	}
	c.Mode = "wireguard" // may advertise a NAT's address
	if err := c.CheckHost(local); err != nil {
		t.Fatalf("wireguard advertise: %v", err)
	}
	c.Bind = netip.MustParseAddrPort("[fd77::2]:7496")
	if err := c.CheckHost(local); err == nil || !strings.Contains(err.Error(), "invalid bind") {
		t.Fatalf("foreign bind: %v", err)
	}
	c.Bind = netip.MustParseAddrPort("[fd77::1]:7496")
	bad := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.KeyFile = bad
	if err := c.CheckHost(local); err == nil || !strings.Contains(err.Error(), "invalid key_file") {
		t.Fatalf("bad key: %v", err)
	}
}

// TestRunRefusesForeignAdvertiseBeforeCreatingAnything: an --advertise no
// local link holds stops the agent before the state dir is created or the
// IPAM map seeded, so a later correct start is not a seed host by accident.
func TestRunRefusesForeignAdvertiseBeforeCreatingAnything(t *testing.T) {
	c, err := load(t, loadCase{args: []string{"--insecure", "--advertise", "192.0.2.77"}})
	if err != nil {
		t.Fatal(err)
	}
	c.StateDir = filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(c.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "no local interface holds 192.0.2.77") {
		t.Fatalf("Run = %v, want a refusal of the advertise address", err)
	}
	ents, err := os.ReadDir(c.StateDir)
	if err != nil || len(ents) != 0 {
		t.Fatalf("state dir after the refusal: %v %v (want empty)", ents, err)
	}
}
