package lab

import (
	"context"
	"net/netip"

	"github.com/hashicorp/go-hclog"
)

// The lab's namespace and switch helpers, for other rigs built on the same
// switch (deploy/rig boots systemd machines in namespaces made by these).

// CreateNetns makes namespace ns with lo up; an existing one is an error.
func CreateNetns(ctx context.Context, log hclog.Logger, ns string) error {
	return createNetns(ctx, log, ns)
}

// CreateSwitch makes the switch bridge (STP off) inside namespace ns.
func CreateSwitch(ctx context.Context, log hclog.Logger, ns string) error {
	return createSwitch(ctx, log, ns)
}

// PlugIn connects namespace ns to the switch in namespace sw: eth0 in ns
// with addr (and a default route via gw when valid), port on the switch.
func PlugIn(ctx context.Context, log hclog.Logger, sw, port, ns string, addr netip.Prefix, gw netip.Addr) error {
	return plugIn(ctx, log, sw, port, ns, addr, gw)
}

// DeleteNetns kills what is left in ns and deletes it; missing is fine.
func DeleteNetns(ctx context.Context, log hclog.Logger, ns string) error {
	return deleteNetns(ctx, log, ns)
}
