package rig

import (
	"slices"
	"strings"
	"testing"
)

func TestRootfsKeyFollowsWhatGoesIn(t *testing.T) {
	base := Rootfs{}
	if base.Key() != (Rootfs{Suite: "bookworm", Packages: DefaultPackages}).Key() {
		t.Fatal("defaults and their explicit values must share a cache entry")
	}
	reordered := slices.Clone(DefaultPackages)
	slices.Reverse(reordered)
	if base.Key() != (Rootfs{Packages: reordered}).Key() {
		t.Fatal("the package order must not matter")
	}
	for _, other := range []Rootfs{
		{Packages: append(slices.Clone(DefaultPackages), "busybox")},
		{Suite: "trixie"},
		{Mirror: "http://example.invalid/debian"},
	} {
		if other.Key() == base.Key() {
			t.Errorf("%+v shares the default's cache key", other)
		}
	}
	if !strings.HasPrefix(base.Key(), "bookworm-") {
		t.Errorf("key %q", base.Key())
	}
}

func TestMmdebstrapArgs(t *testing.T) {
	args := Rootfs{}.mmdebstrapArgs("/x")
	joined := strings.Join(args, " ")
	for _, want := range []string{"--variant=minbase", "--include=systemd,systemd-sysv,dbus,iproute2", "machine-id", "/etc/hostname", "bookworm /x http://deb.debian.org/debian"} {
		if !strings.Contains(joined, want) {
			t.Errorf("mmdebstrap args lack %q: %s", want, joined)
		}
	}
}

func TestOptions(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil || o.Name != DefaultName || o.Machines != 3 || o.WorkDir != "/var/lib/flatmesh-rig/fmrig" {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	for _, bad := range []Options{{Name: "Bad"}, {Name: "a-b"}, {Machines: 10}, {Name: "averyveryverylongname"}, {WorkDir: "rel"}} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	m := Machine{}.withAddr(2)
	if m.Addr.String() != "10.98.0.12/24" {
		t.Errorf("machine 2 address %s", m.Addr)
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadState(dir); err != ErrNoRig {
		t.Fatalf("empty dir: %v", err)
	}
	s := &state{Name: "r", WorkDir: dir, Namespaces: []string{"r-sw", "r-m1"}, Machines: []Machine{Machine{Name: "m1"}.withAddr(1)}}
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(dir)
	if err != nil || got.Machines[0].Addr != s.Machines[0].Addr || len(got.Namespaces) != 2 {
		t.Fatalf("got %+v %v", got, err)
	}
}
