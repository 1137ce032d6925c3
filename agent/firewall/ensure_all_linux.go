package firewall

// EnsureAll programs every chain of o: the forwarding, NAT and tunnel-port
// chains (Ensure) and the raw-table chains (EnsureNoTrack), in the order
// that keeps one member check of the tunnel port in place at every step
// without making a chain only to remove it again, and converges in one
// call from any state.
//
// With masquerade (the nat table makes conntrack run) the member check
// lives in raw PREROUTING: written first, Ensure then finds it in place and
// needs no FLATMESH-INPUT, so a member change is two writes (raw, nat) and
// no filter INPUT chain is ever made on such a host. The other order made
// and removed FLATMESH-INPUT on every member change (three writes; at 50
// hosts every join and failure cost every host that much iptables work)
// and left an empty filter INPUT base chain, a hook per received packet.
// The last two steps write only on the first start (the raw chains that
// wait for the nat table Ensure just made) or when masquerade was just
// turned on (FLATMESH-INPUT goes once the raw check is in).
//
// Without masquerade, Ensure goes first: where nothing else tracks
// connections FLATMESH-INPUT is the check and EnsureNoTrack then installs
// no raw chain; where something does (Docker's nat table), EnsureNoTrack
// moves the check to raw and the last Ensure removes FLATMESH-INPUT.
//
// The steps run under one hold of the firewall's lock, after one sync of
// the member sets (calling Ensure and EnsureNoTrack, which each sync them,
// read the same set three or four times per call).
func EnsureAll(o Options, tunnelPort int) error {
	return withMemberSets(o, func(path string) error {
		noTrack := func() error { return ensureNoTrackRules(path, o, tunnelPort) }
		ensure := func() error { return ensureRules(path, o) }
		steps := []func() error{ensure, noTrack, ensure}
		if o.Masquerade {
			steps = []func() error{noTrack, ensure, noTrack, ensure}
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	})
}
