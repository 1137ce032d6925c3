package cluster

// IsLive reports whether name is this agent or a member it sees alive or
// suspect: what AlivePeers lists, without copying and sorting the member
// table (the allocator asks it for every message it receives, so a copy
// per call made a cluster of n hosts cost O(n) per message).
func (c *Cluster) IsLive(name string) bool {
	if name == c.cfg.Name {
		return c.Self().State == StateAlive
	}
	return c.members.live(name)
}

// live reports whether name is in the table as alive or suspect.
func (t *memberTable) live(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[name]
	return ok && e.peer.State.Live()
}
