package firewall

// EnsureNoTrack makes the raw-table chains match NoTrackRules(o, tunnelPort), each
// jumped to first from its hook. Idempotent (nothing written when all is in
// place); safe for concurrent use, serialised with Ensure and Remove.
func EnsureNoTrack(o Options, tunnelPort int) error {
	return withMemberSets(o, func(path string) error { return ensureNoTrackRules(path, o, tunnelPort) })
}

// ensureNoTrackRules is EnsureNoTrack's work once the member sets are in
// place. Caller holds mu.
func ensureNoTrackRules(path string, o Options, tunnelPort int) error {
	rs := NoTrackRules(o, tunnelPort)
	for _, f := range families(o) {
		if err := ensureFamily(path, f, rs.Chains(f), o); err != nil {
			return err
		}
	}
	return nil
}

// RemoveNoTrack deletes the jumps to the raw-table chains and the chains,
// and the member sets once no rule names them, for IPv4 and IPv6 (a
// missing ip6tables is no error unless o.IPv6).
// Idempotent. Only o.NetnsPath, o.IPv6 and o.Logger matter.
func RemoveNoTrack(o Options) error {
	return locked(o.NetnsPath, func(path string) error {
		if err := removeBothFamilies(path, o, func(f Family) []Chain { return noTrackChains(Options{}, f, 0) }); err != nil {
			return err
		}
		return destroyMemberSets(path)
	})
}

// CheckNoTrack reports what differs from what EnsureNoTrack(o, tunnelPort)
// would make (as Check does for Ensure). Read-only.
func CheckNoTrack(o Options, tunnelPort int) (problems []string, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	rs := NoTrackRules(o, tunnelPort)
	err = locked(o.NetnsPath, func(path string) error {
		for _, f := range families(o) {
			have, err := save(path, f)
			if err != nil {
				return err
			}
			problems = append(problems, problemsNeeded(f, rs.Chains(f), have, o.OnlyWhenNeeded)...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return problems, nil
}

// removeChains deletes chains and every jump to them, re-reading and
// retrying when another program changed the tables in between.
func removeChains(path string, f Family, chains []Chain) error {
	var lastErr error
	for range ensureAttempts {
		have, err := save(path, f)
		if err != nil {
			return err
		}
		text := planRemove(chains, have)
		if text == "" {
			return nil
		}
		if lastErr = restore(path, f, text); lastErr == nil {
			return nil
		}
	}
	return lastErr
}
