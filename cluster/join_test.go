package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNormalizeJoinAddr(t *testing.T) {
	good := map[string]string{
		"10.0.0.2":           "10.0.0.2:7496",
		" 10.0.0.2:7000 ":    "10.0.0.2:7000",
		"2001:db8::1":        "[2001:db8::1]:7496",
		"[2001:db8::1]":      "[2001:db8::1]:7496",
		"[2001:db8::1]:9000": "[2001:db8::1]:9000",
		"host1":              "host1:7496",
		"host1.lan:7001":     "host1.lan:7001",
	}
	for in, want := range good {
		got, err := normalizeJoinAddr(in)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "host:0", "host:70000", "host:x", ":7000", "a:b:c"} {
		if _, err := normalizeJoinAddr(bad); !errors.Is(err, errBadAddress) {
			t.Errorf("%q: err = %v, want errBadAddress", bad, err)
		}
	}
}

// multi imitates memberlist's multierror.
type multi []error

func (m multi) Error() string          { return fmt.Sprintf("%d errors occurred", len(m)) }
func (m multi) WrappedErrors() []error { return m }

func TestMemberlistDetail(t *testing.T) {
	err := multi{errors.New("failed to join 10.0.0.2:7496: peer \"x\" is in cluster \"blue\", this agent is in \"red\"")}
	if got := memberlistDetail(err); got != `peer "x" is in cluster "blue", this agent is in "red"` {
		t.Errorf("detail %q", got)
	}
	if got := memberlistDetail(errors.New("plain")); got != "plain" {
		t.Errorf("detail %q", got)
	}
}

func TestPermanent(t *testing.T) {
	refused := fmt.Errorf("joining a: refused: %w", &RefusedError{Reason: "r"})
	key := fmt.Errorf("joining b: %w", ErrGossipKey)
	down := errors.New("joining c: dial tcp: connection refused")
	cases := []struct {
		err  error
		want bool
	}{
		{errors.Join(refused), true},
		{errors.Join(refused, key), true},
		{errors.Join(refused, down), false},
		{errors.Join(down), false},
		{fmt.Errorf("joining: %w", errBadAddress), true},
		{errors.Join(fmt.Errorf("joining d: %w", dupUnderlay("d", netip.MustParseAddr("10.0.2.15"), "a"))), false},
	}
	for i, tc := range cases {
		if got := permanent(tc.err); got != tc.want {
			t.Errorf("case %d (%v): permanent = %v", i, tc.err, got)
		}
	}
}

func TestIsKeyMismatch(t *testing.T) {
	for _, s := range []string{"no installed keys could decrypt the message",
		"encryption is configured but remote state is not encrypted",
		"remote state is encrypted and encryption is not configured"} {
		if !isKeyMismatch(s) {
			t.Errorf("%q not recognised", s)
		}
	}
	if isKeyMismatch("dial tcp 127.0.0.1:1: connect: connection refused") {
		t.Error("connection refused taken for a key mismatch")
	}
}

func TestPeersSnapshotAndFile(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	members := []Peer{
		{Name: "c", Addr: lo, Port: 3, State: StateFailed},
		{Name: "self", Addr: lo, Port: 1, State: StateAlive},
		{Name: "b", Addr: lo, Port: 2, State: StateAlive},
		{Name: "gone", Addr: lo, Port: 4, State: StateLeft},
	}
	snap := snapshotPeers("self", members)
	want := []savedPeer{{"b", lo, 2}, {"c", lo, 3}}
	if !equalSaved(snap, want) {
		t.Fatalf("snapshot %+v, want %+v", snap, want)
	}
	dir := t.TempDir()
	if got, err := loadPeers(dir); err != nil || got != nil {
		t.Fatalf("missing file: %v %v", got, err)
	}
	if err := savePeers(dir, snap, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := loadPeers(dir)
	if err != nil || !equalSaved(got, want) {
		t.Fatalf("loaded %+v, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, peersFile), []byte("{bad"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadPeers(dir); err == nil {
		t.Error("corrupt peers.json loaded")
	}
}

func TestMemberTableStatesAndReap(t *testing.T) {
	now := time.Unix(1000, 0)
	tab := newMemberTable("self", time.Hour, func() time.Time { return now })
	lo := netip.MustParseAddr("127.0.0.1")
	tab.set("self", lo, 1, StateAlive, Meta{})
	tab.set("a", lo, 2, StateAlive, Meta{})
	tab.set("b", lo, 3, StateAlive, Meta{})
	if st := tab.gone("a", lo, 2, Meta{}); st != StateFailed {
		t.Errorf("plain disappearance = %s, want failed", st)
	}
	if st := tab.gone("b", lo, 3, Meta{Leaving: true}); st != StateLeft {
		t.Errorf("announced leave = %s, want left", st)
	}
	if tab.numAlive() != 1 {
		t.Errorf("numAlive = %d", tab.numAlive())
	}
	if got := tab.list(); len(got) != 3 || got[0].Name != "a" || got[2].Name != "self" {
		t.Errorf("list %+v", got)
	}
	now = now.Add(2 * time.Hour)
	if got := tab.list(); len(got) != 1 || got[0].Name != "self" {
		t.Errorf("after reap: %+v", got)
	}
}
