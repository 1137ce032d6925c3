package flat

import (
	"errors"
	"fmt"
)

// ErrCrashHook is returned where the CrashAfterStep or
// CrashAfterRestoreStep test hook stopped a run as a SIGKILL would.
var ErrCrashHook = errors.New("stopped by a crash test hook (nothing rolled back)")

// interrupted reports whether rec was left by a run that died in the middle
// of a switch-over, a rollback or a restore.
func interrupted(rec Record) bool {
	return rec.Phase == PhaseSwitching || rec.Phase == PhaseRestoring
}

// rollBackInterrupted puts the host back to the configuration recorded by a
// run that died mid-change (whatever step it reached: the half-done bridge
// is never adopted), removes the record and returns the fresh snapshot, so
// the caller switches over from the original configuration again and
// verifies the gateway. A crash here leaves the record in PhaseRestoring,
// so the next start rolls back again.
func (c *conn) rollBackInterrupted(rec Record, o Options) (Snapshot, error) {
	o.Logger.Warn("an earlier switch-over, rollback or restore was interrupted: rolling back to the recorded configuration, then switching over again",
		"phase", rec.Phase, "steps_done", rec.StepsDone, "steps_total", rec.StepsTotal, "file", recordPath(o.StateDir))
	rec.Phase = PhaseRestoring
	if err := writeRecord(o.StateDir, rec); err != nil {
		return Snapshot{}, err
	}
	if err := c.restoreTo(rec.Original, o.Iface, o.Bridge, o.Logger, o.CrashAfterRestoreStep); err != nil {
		if errors.Is(err, ErrCrashHook) {
			return Snapshot{}, err
		}
		return Snapshot{}, fmt.Errorf("rolling back the interrupted run recorded in %s: %w (the record is kept: run `flatmesh flat restore`)", recordPath(o.StateDir), err)
	}
	if err := removeRecord(o.StateDir); err != nil {
		return Snapshot{}, err
	}
	return c.snapshot(o.Iface, o.Bridge)
}
