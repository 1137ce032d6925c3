package flat

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// restart is the agent starting again after a crash: SwitchOver with no
// hook. The host must end fully switched and verified.
func restartSwitched(t *testing.T, l *lab, before Snapshot, what string) {
	t.Helper()
	o := l.options(t)
	res, err := SwitchOver(context.Background(), o)
	if err != nil {
		t.Fatalf("%s: restart: %v", what, err)
	}
	if res.Adopted || !res.Checked.IsValid() {
		t.Fatalf("%s: restart adopted a half-done bridge or did not verify the gateway: %+v", what, res)
	}
	checkSwitched(t, before, l.settled(t), o.Bridge)
	rec, ok, err := ReadRecord(l.stateDir)
	if err != nil || !ok || rec.Phase != PhaseSwitched {
		t.Fatalf("%s: record after restart: %+v %v %v", what, rec, ok, err)
	}
}

func restoreClean(t *testing.T, l *lab, before Snapshot, what string) {
	t.Helper()
	if err := Restore(context.Background(), l.options(t)); err != nil {
		t.Fatalf("%s: restore: %v", what, err)
	}
	l.requireSame(t, before, what+": restore")
}

// TestSwitchOverCrashAtEveryStep: the process dies (crash hook: no
// rollback, record as left) after every step of the switch-over, and the
// agent starts again. The host ends fully switched and verified, never
// stranded with a half-done bridge adopted.
func TestSwitchOverCrashAtEveryStep(t *testing.T) {
	l := newLab(t)
	before := l.settled(t)
	plan, err := PlanSwitch(before, l.options(t))
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= len(plan.Steps); n++ {
		what := fmt.Sprintf("crash after step %d (%s)", n, plan.Steps[n-1])
		o := l.options(t)
		o.CrashAfterStep = n
		if _, err := SwitchOver(context.Background(), o); !errors.Is(err, ErrCrashHook) {
			t.Fatalf("%s: %v", what, err)
		}
		rec, ok, err := ReadRecord(l.stateDir)
		if err != nil || !ok || rec.Phase != PhaseSwitching || rec.StepsDone != n || rec.StepsTotal != len(plan.Steps) {
			t.Fatalf("%s: record %+v %v %v; want phase %s, %d of %d steps", what, rec, ok, err, PhaseSwitching, n, len(plan.Steps))
		}
		restartSwitched(t, l, before, what)
		restoreClean(t, l, before, what)
	}
	l.pingsOK(t)
}

// TestSwitchOverCrashDuringRestore: the process dies in the middle of a
// restore (after each of its steps) and of a rollback; the next start
// rolls back to the record and switches over again, verified.
func TestSwitchOverCrashDuringRestore(t *testing.T) {
	l := newLab(t)
	before := l.settled(t)
	if _, err := SwitchOver(context.Background(), l.options(t)); err != nil {
		t.Fatal(err)
	}
	switched := l.settled(t)
	n := len(PlanRestore(before, switched).Steps)
	for k := 1; k <= n; k++ {
		what := fmt.Sprintf("crash after restore step %d of %d", k, n)
		o := l.options(t)
		o.CrashAfterRestoreStep = k
		if err := Restore(context.Background(), o); !errors.Is(err, ErrCrashHook) {
			t.Fatalf("%s: %v", what, err)
		}
		if rec, ok, _ := ReadRecord(l.stateDir); !ok || rec.Phase != PhaseRestoring {
			t.Fatalf("%s: record %+v %v", what, rec, ok)
		}
		restartSwitched(t, l, before, what)
	}
	restoreClean(t, l, before, "after the restore crashes")

	// A rollback (the gateway check fails here by the FailAfterStep hook)
	// that dies after its first step.
	o := l.options(t)
	o.FailAfterStep = 4
	o.CrashAfterRestoreStep = 1
	if _, err := SwitchOver(context.Background(), o); !errors.Is(err, ErrCrashHook) {
		t.Fatalf("crash during rollback: %v", err)
	}
	restartSwitched(t, l, before, "crash during rollback")
	restoreClean(t, l, before, "crash during rollback")
	l.pingsOK(t)
}
