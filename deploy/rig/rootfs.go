// Package rig boots flatmesh hosts as real systemd machines: a Debian
// bookworm rootfs built once with mmdebstrap (cached, keyed by what goes into
// it), one systemd-nspawn machine per host on a lab switch (network
// namespaces from deploy/lab), the flatmesh .deb installed inside each by
// deploy/vagrant/provision.sh (the script Vagrant runs), and the unit from
// deploy/systemd run by the machine's own systemd as PID 1.
//
// The host has no system D-Bus, so machines boot with --register=no
// --keep-unit and commands run inside them through nsenter into the
// machine's PID 1. Each machine's root is an overlay (the shared cached
// rootfs below, a per-machine upper directory) mounted by the rig, so what a
// machine writes survives a reboot of the machine and is gone with the rig.
package rig

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
)

// Rootfs describes the Debian tree the machines boot.
type Rootfs struct {
	Suite    string   // default "bookworm"
	Mirror   string   // default "http://deb.debian.org/debian"
	Packages []string // default DefaultPackages
}

// DefaultPackages is what every machine has: systemd as PID 1, the tools
// provision.sh needs (so it does not reach for the network) and ping.
var DefaultPackages = []string{
	"systemd", "systemd-sysv", "dbus", "iproute2", "iptables", "ethtool",
	"iputils-ping", "procps", "ca-certificates",
}

func (r Rootfs) withDefaults() Rootfs {
	if r.Suite == "" {
		r.Suite = "bookworm"
	}
	if r.Mirror == "" {
		r.Mirror = "http://deb.debian.org/debian"
	}
	if len(r.Packages) == 0 {
		r.Packages = DefaultPackages
	}
	return r
}

// Key names the cache entry: a hash of the suite, the mirror, the variant and
// the sorted package list, so changing any of them builds a new tree.
func (r Rootfs) Key() string {
	r = r.withDefaults()
	pk := slices.Clone(r.Packages)
	slices.Sort(pk)
	h := sha256.Sum256([]byte("v1|minbase|" + r.Suite + "|" + r.Mirror + "|" + strings.Join(pk, ",")))
	return r.Suite + "-" + hex.EncodeToString(h[:])[:16]
}

// mmdebstrapArgs are the arguments that build the tree into dir.
func (r Rootfs) mmdebstrapArgs(dir string) []string {
	r = r.withDefaults()
	return []string{
		"--variant=minbase", "--include=" + strings.Join(r.Packages, ","),
		// The shared tree must not carry an identity: each machine gets its
		// own machine-id at first boot and its hostname from nspawn.
		"--customize-hook=echo -n > \"$1/etc/machine-id\"",
		"--customize-hook=rm -f \"$1/etc/hostname\"",
		r.Suite, dir, r.Mirror,
	}
}
