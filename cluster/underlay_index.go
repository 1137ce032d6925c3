package cluster

import "net/netip"

// underlayIndex maps an underlay address to the names of the members (any
// state) whose metadata gives it. The duplicate-underlay check runs for
// every alive message and for every node of a push-pull merge: a scan of
// the member table there made one merge of an n-host state O(n^2).
// Guarded by memberTable.mu; the zero value is ready to use.
type underlayIndex map[netip.Addr]map[string]struct{}

// move records that name's underlay changed from old to new (an invalid
// address: none).
func (x *underlayIndex) move(name string, old, new netip.Addr) {
	if old == new {
		return
	}
	if set := (*x)[old]; old.IsValid() && set != nil {
		delete(set, name)
		if len(set) == 0 {
			delete(*x, old)
		}
	}
	if !new.IsValid() {
		return
	}
	if *x == nil {
		*x = underlayIndex{}
	}
	set := (*x)[new]
	if set == nil {
		set = map[string]struct{}{}
		(*x)[new] = set
	}
	set[name] = struct{}{}
}
