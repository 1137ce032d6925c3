package flat

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// CheckDrift runs after the switch-over, on every reconcile pass: it
// repairs drift on flat mode's own objects and reports drift on the
// host's (see Drift). ports are the host ends of the container veths that
// belong on the bridge. Without a record (no switch-over, or restored) it
// does nothing. Not safe to run concurrently with SwitchOver or Restore
// (the agent's kernel lock serialises them).
func CheckDrift(ctx context.Context, o Options, ports []string) (Drift, error) {
	if err := ctx.Err(); err != nil {
		return Drift{}, err
	}
	rec, ok, err := ReadRecord(o.StateDir)
	if err != nil || !ok {
		return Drift{}, err
	}
	cur, err := TakeSnapshot(o.NetnsPath, rec.Iface, rec.Bridge)
	if err != nil {
		return Drift{}, err
	}
	fix, host := checkDrift(rec, cur, rec.Bridge, ports)
	d := Drift{Host: host}
	if !fix.bridge && len(fix.ports) == 0 {
		return d, nil
	}
	ns, err := kernel.OpenNS(o.NetnsPath)
	if err != nil {
		return d, err
	}
	defer ns.Close()
	if fix.bridge {
		var mac net.HardwareAddr
		if rec.Original.NIC != nil {
			if mac, err = net.ParseMAC(rec.Original.NIC.MAC); err != nil {
				return d, fmt.Errorf("recorded NIC mac %q: %w", rec.Original.NIC.MAC, err)
			}
		}
		if _, _, err := kernel.EnsureBridge(ns, kernel.BridgeSpec{Name: rec.Bridge, MAC: mac}); err != nil {
			return d, fmt.Errorf("repairing bridge %s: %w", rec.Bridge, err)
		}
	}
	var errs []error
	for _, p := range fix.ports {
		errs = append(errs, enslave(ns, p, rec.Bridge))
	}
	d.Repaired = fix.reasons
	return d, errors.Join(errs...)
}

// enslave makes link a port of bridge and sets it up.
func enslave(ns *kernel.NS, link, bridge string) error {
	l, err := ns.H.LinkByName(link)
	if kernel.IsNotFound(err) {
		return nil // a container that just went away
	}
	if err != nil {
		return fmt.Errorf("looking up %s: %w", link, err)
	}
	br, err := ns.H.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("looking up bridge %s: %w", bridge, err)
	}
	if l.Attrs().MasterIndex != br.Attrs().Index {
		if err := ns.H.LinkSetMasterByIndex(l, br.Attrs().Index); err != nil {
			return fmt.Errorf("putting %s back on bridge %s: %w", link, bridge, err)
		}
	}
	if err := ns.H.LinkSetUp(l); err != nil {
		return fmt.Errorf("setting %s up: %w", link, err)
	}
	return nil
}
