package wireguard

import (
	"fmt"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// Result is what one Apply changed.
type Result struct {
	Links  []string    // link-level changes (created, mtu, up), human readable
	Device Plan        // WireGuard key, port and peers
	Plan   kernel.Plan // bridge addresses and routes
}

// Empty reports whether Apply found everything as desired.
func (r Result) Empty() bool { return len(r.Links) == 0 && r.Device.Empty() && r.Plan.Empty() }

// Apply puts st into ns in dependency order: the bridge, the WireGuard
// link's MTU and up state (the link must exist: OpenDevice makes it), the
// device's key, port and peers through wgctrl (one path for kernel and
// userspace devices), then one kernel.Reconcile of bridge addresses and
// routes. Only objects of st.Scope() and the peers of our own device are
// touched. Idempotent; callers serialise Apply per namespace.
func Apply(ns *kernel.NS, wg *wgctrl.Client, st State) (Result, error) {
	var res Result
	_, changes, err := kernel.EnsureBridge(ns, st.Bridge.Spec)
	res.Links = append(res.Links, changes...)
	if err != nil {
		return res, fmt.Errorf("wireguard: %w", err)
	}
	changes, err = kernel.EnsureLinkUp(ns, st.Device.Name, st.MTU)
	res.Links = append(res.Links, changes...)
	if err != nil {
		return res, fmt.Errorf("wireguard: %w", err)
	}
	if res.Device, err = ConfigureDevice(wg, st.Device); err != nil {
		return res, err
	}
	res.Plan, err = kernel.Reconcile(ns, st.Objects, st.Scope())
	if err != nil {
		return res, fmt.Errorf("wireguard: %w", err)
	}
	return res, nil
}

// ConfigureDevice reads the device through wgctrl, diffs it with want and
// applies the plan (nothing when it is empty).
func ConfigureDevice(wg *wgctrl.Client, want Device) (Plan, error) {
	d, err := wg.Device(want.Name)
	if err != nil {
		return Plan{}, fmt.Errorf("wireguard: reading device %s: %w", want.Name, err)
	}
	plan := Diff(want, FromWgtypes(d))
	if plan.Empty() {
		return plan, nil
	}
	if err := wg.ConfigureDevice(want.Name, plan.Config()); err != nil {
		return plan, fmt.Errorf("wireguard: configuring %s (%s): %w", want.Name, plan, err)
	}
	if err := Handshake(wg, want.Name, plan.Add); err != nil {
		return plan, err
	}
	return plan, nil
}

// Handshake makes the device initiate a handshake with each of peers now
// (a new peer, or one whose key was rotated) instead of when it next has a
// packet for it: otherwise an idle side leaves the other waiting for its
// handshake retry (5 s) after a key rotation. There is no "handshake now"
// operation in the configuration protocol; kernel WireGuard and
// wireguard-go both send a keepalive (which needs a session, so starts a
// handshake) when a peer's persistent keepalive goes from off to on. So
// each peer's keepalive is switched off, on, and back to its setting.
func Handshake(wg *wgctrl.Client, device string, peers []Peer) error {
	if len(peers) == 0 {
		return nil
	}
	steps := [3][]wgtypes.PeerConfig{}
	for _, p := range peers {
		on := max(p.Keepalive, time.Second)
		for i, d := range []time.Duration{0, on, p.Keepalive} {
			steps[i] = append(steps[i], wgtypes.PeerConfig{PublicKey: p.PublicKey, UpdateOnly: true, PersistentKeepaliveInterval: &d})
		}
	}
	for _, s := range steps {
		if err := wg.ConfigureDevice(device, wgtypes.Config{Peers: s}); err != nil {
			return fmt.Errorf("wireguard: starting handshakes on %s: %w", device, err)
		}
	}
	return nil
}

// Remove deletes the WireGuard link and the bridge (with every route and
// address on them), for `flatmesh leave --purge`. Stop a userspace device
// first. Idempotent.
func Remove(ns *kernel.NS, device, bridge string) error {
	for _, l := range []string{device, bridge} {
		if err := kernel.DeleteLink(ns, l); err != nil {
			return fmt.Errorf("wireguard: %w", err)
		}
	}
	return nil
}
