package ipam

import "time"

// ReleaseMany is Release for many allocations (by ID and IfName) with one
// save: a burst of detaches costs one fsync, not one each. Either all are
// released or, when the save fails, none.
func (a *Allocator) ReleaseMany(als []Allocation) error {
	a.mu.Lock()
	defer a.unlockAndFlush()
	type undo struct {
		al       *alloc
		prev     time.Time
		hadFreed bool
	}
	var done []undo
	for _, r := range als {
		al, ok := a.allocs[allocKey{r.ID, r.IfName}]
		if !ok {
			continue
		}
		a.removeAlloc(al)
		prev, hadFreed := a.freedAt(al.off)
		a.setFreed(al.off, a.now())
		a.updateUse(a.sp.blockOf(al.off))
		done = append(done, undo{al, prev, hadFreed})
	}
	if len(done) == 0 {
		return nil
	}
	if err := a.save(); err != nil {
		for i := len(done) - 1; i >= 0; i-- {
			u := done[i]
			a.addAlloc(u.al)
			if u.hadFreed {
				a.setFreed(u.al.off, u.prev)
			} else {
				a.clearFreed(u.al.off)
			}
			a.updateUse(a.sp.blockOf(u.al.off))
		}
		return err
	}
	if a.removedSelf && len(a.allocs) == 0 {
		a.removedSelf = false
		a.checkSelfRemoved()
	}
	a.notify()
	return nil
}
