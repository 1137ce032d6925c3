package flat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/hashicorp/go-hclog"
)

// settleTimeout bounds the wait, after a rollback or restore, for what the
// kernel finishes on its own (IPv6 duplicate address detection and the
// local routes it adds afterwards) before the result is compared.
const settleTimeout = 4 * time.Second

// Result describes a switch-over.
type Result struct {
	Adopted    bool             // the bridge was already in place; nothing was changed
	Bridge     string           // the bridge now carrying the host's addresses
	Checked    netip.Addr       // the gateway (or probe address) that answered ARP
	CheckedMAC net.HardwareAddr // its MAC
	Steps      int              // plan steps applied
	Took       time.Duration    // from the first change to the end of the check
	Original   Snapshot         // the recorded original configuration
}

// SwitchOver moves the NIC o.Iface into the bridge o.Bridge as a
// transaction (see the package comment). If the bridge is already in place
// with the NIC in it and the original configuration is recorded, it adopts
// it without changing anything (Result.Adopted). If a record and a bridge
// are left from an interrupted run, it first restores the record. On any
// failure it rolls back by itself and the error says what failed and whether
// the rollback restored the original configuration exactly.
//
// Not safe to run concurrently with SwitchOver or Restore on the same NIC.
// Rollback does not stop when ctx ends; the switch-over does.
func SwitchOver(ctx context.Context, o Options) (Result, error) {
	o = o.withDefaults()
	if o.StateDir == "" {
		return Result{}, errors.New("switch-over needs a state directory to record the original configuration in")
	}
	log := o.Logger
	c, err := openConn(o.NetnsPath)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	cur, err := c.snapshot(o.Iface, o.Bridge)
	if err != nil {
		return Result{}, fmt.Errorf("reading %s: %w", o.Iface, err)
	}
	rec, haveRec, err := ReadRecord(o.StateDir)
	if err != nil {
		return Result{}, err
	}
	if haveRec {
		if rec.Iface != o.Iface || rec.Bridge != o.Bridge {
			return Result{}, fmt.Errorf("%s records %s in bridge %s, not %s in %s: run `flatmesh flat restore` with the old settings first",
				recordPath(o.StateDir), rec.Iface, rec.Bridge, o.Iface, o.Bridge)
		}
		switch {
		case interrupted(rec):
			if cur, err = c.rollBackInterrupted(rec, o); err != nil {
				return Result{}, err
			}
		case adoptable(cur):
			return adopt(cur, rec, o)
		default:
			if cur, err = c.recoverLeftover(rec, cur, o); err != nil {
				return Result{}, err
			}
		}
	} else if adoptable(cur) {
		return Result{}, fmt.Errorf("%s is already a port of %s but %s holds no record of its original configuration, so flatmesh could not restore it: put the NIC back by hand (ip link set %s nomaster, move the addresses and routes back, delete %s) and retry",
			o.Iface, o.Bridge, o.StateDir, o.Iface, o.Bridge)
	}
	if err := checkManagers(cur, o); err != nil {
		return Result{}, err
	}
	plan, err := PlanSwitch(cur, o)
	if err != nil {
		return Result{}, err
	}
	rec = Record{Version: recordVersion, Iface: o.Iface, Bridge: o.Bridge, Created: time.Now().UTC(), Original: cur,
		Phase: PhaseSwitching, StepsTotal: len(plan.Steps)}
	if err := writeRecord(o.StateDir, rec); err != nil {
		return Result{}, err
	}
	log.Info("switching NIC into bridge", "iface", o.Iface, "bridge", o.Bridge, "steps", len(plan.Steps))
	start := time.Now()
	res := Result{Bridge: o.Bridge, Original: cur}
	res.Steps, err = c.applySwitch(ctx, plan, &rec, o)
	if errors.Is(err, ErrCrashHook) {
		return Result{}, err // as a SIGKILL would: no rollback
	}
	if err == nil {
		res.Checked, res.CheckedMAC, err = verify(ctx, cur, o)
	}
	if err == nil {
		rec.Phase = PhaseSwitched
		err = writeRecord(o.StateDir, rec)
	}
	res.Took = time.Since(start)
	if err != nil {
		return Result{}, c.rollback(rec, o, err)
	}
	log.Info("switch-over done", "bridge", o.Bridge, "checked", res.Checked, "mac", res.CheckedMAC.String(), "took", res.Took)
	return res, nil
}

// adopt accepts a bridge left by an earlier run after checking that it is
// compatible and that the options still fit.
func adopt(cur Snapshot, rec Record, o Options) (Result, error) {
	b := cur.Bridge
	var bad []string
	if b.Link.Kind != "bridge" {
		bad = append(bad, "it is a "+b.Link.Kind)
	}
	if b.Link.MAC != cur.NIC.MAC {
		bad = append(bad, fmt.Sprintf("its MAC %s is not %s's %s", b.Link.MAC, cur.NIC.Name, cur.NIC.MAC))
	}
	if b.STP || b.ForwardDelay != 0 {
		bad = append(bad, fmt.Sprintf("STP %v, forward delay %d (want off, 0)", b.STP, b.ForwardDelay))
	}
	if len(bad) > 0 {
		return Result{}, fmt.Errorf("bridge %s holds %s but is not as flatmesh makes it (%s): run `flatmesh flat restore` and start again",
			b.Link.Name, cur.NIC.Name, strings.Join(bad, "; "))
	}
	if err := Preflight(cur, o); err != nil {
		return Result{}, err
	}
	o.Logger.Info("adopting existing bridge", "bridge", b.Link.Name, "iface", cur.NIC.Name)
	return Result{Adopted: true, Bridge: b.Link.Name, Original: rec.Original}, nil
}

// recoverLeftover deals with a record that an interrupted run left behind
// when the NIC is not (or no longer) in the bridge. Without the bridge the
// record is stale and dropped; with it, the record is restored first.
func (c *conn) recoverLeftover(rec Record, cur Snapshot, o Options) (Snapshot, error) {
	if cur.Bridge == nil {
		o.Logger.Warn("dropping stale record of an earlier switch-over (the bridge is gone)", "file", recordPath(o.StateDir))
		return cur, removeRecord(o.StateDir)
	}
	o.Logger.Warn("an earlier switch-over or restore was interrupted: restoring its record first", "bridge", o.Bridge)
	if err := c.restoreTo(rec.Original, o.Iface, o.Bridge, o.Logger, 0); err != nil {
		return Snapshot{}, fmt.Errorf("restoring the configuration recorded by an interrupted run: %w", err)
	}
	if err := removeRecord(o.StateDir); err != nil {
		return Snapshot{}, err
	}
	return c.snapshot(o.Iface, o.Bridge)
}

// applySwitch applies the plan step by step, recording progress in rec
// after each step, stopping at the first failure, at ctx's end, or where
// the FailAfterStep and CrashAfterStep test hooks say.
func (c *conn) applySwitch(ctx context.Context, plan Plan, rec *Record, o Options) (int, error) {
	n := len(plan.Steps)
	for i, st := range plan.Steps {
		if err := ctx.Err(); err != nil {
			return i, fmt.Errorf("interrupted before step %d of %d (%s): %w", i+1, n, st, err)
		}
		o.Logger.Debug("applying", "step", i+1, "of", n, "what", st.String())
		if err := c.applyStep(st); err != nil {
			return i, fmt.Errorf("step %d of %d (%s) failed: %w", i+1, n, st, err)
		}
		rec.StepsDone = i + 1
		if err := writeRecord(o.StateDir, *rec); err != nil {
			return i + 1, fmt.Errorf("recording progress after step %d of %d: %w", i+1, n, err)
		}
		if o.CrashAfterStep > 0 && i+1 == o.CrashAfterStep {
			return i + 1, fmt.Errorf("after step %d of %d (%s): %w", i+1, n, st, ErrCrashHook)
		}
		if o.FailAfterStep > 0 && i+1 == o.FailAfterStep {
			return i + 1, fmt.Errorf("forced failure after step %d of %d (%s) by the FailAfterStep test hook", i+1, n, st)
		}
	}
	return n, nil
}

// verify checks that the gateway (or the probe address) answers ARP from
// the bridge, with the host's own address as sender.
func verify(ctx context.Context, orig Snapshot, o Options) (netip.Addr, net.HardwareAddr, error) {
	target, ok := Gateway(orig)
	what := "default gateway"
	if !ok {
		target, what = o.ProbeAddr, "probe address"
	}
	src := sourceFor(target, orig.Addrs)
	mac, err := kernel.ARPResolve(ctx, kernel.ARPResolveOptions{NetnsPath: o.NetnsPath, Iface: o.Bridge, Src: src, Target: target, Timeout: o.VerifyTimeout})
	if err != nil {
		return netip.Addr{}, nil, fmt.Errorf("check failed: the %s %s did not answer ARP from bridge %s: %w", what, target, o.Bridge, err)
	}
	return target, mac, nil
}

// sourceFor picks the host's IPv4 address on target's subnet (or any IPv4
// address) as the sender of an ARP request.
func sourceFor(target netip.Addr, addrs []Addr) netip.Addr {
	var first netip.Addr
	for _, a := range addrs {
		ip := a.Prefix.Addr()
		if !ip.Is4() {
			continue
		}
		if a.Prefix.Masked().Contains(target) {
			return ip
		}
		if !first.IsValid() {
			first = ip
		}
	}
	return first
}

// rollback returns to rec.Original after a failed switch-over, best
// effort, and builds the error that says what failed and how the rollback
// went. The record says PhaseRestoring while it runs.
func (c *conn) rollback(rec Record, o Options, cause error) error {
	o.Logger.Error("switch-over failed, rolling back", "iface", o.Iface, "error", cause)
	rec.Phase = PhaseRestoring
	if werr := writeRecord(o.StateDir, rec); werr != nil {
		o.Logger.Warn("could not mark the record as restoring", "error", werr)
	}
	err := c.restoreTo(rec.Original, o.Iface, o.Bridge, o.Logger, o.CrashAfterRestoreStep)
	if errors.Is(err, ErrCrashHook) {
		return err
	}
	if err != nil {
		return fmt.Errorf("switching %s into bridge %s: %w; ROLLBACK INCOMPLETE: %v; the original configuration stays recorded in %s: run `flatmesh flat restore`",
			o.Iface, o.Bridge, cause, err, recordPath(o.StateDir))
	}
	if err := removeRecord(o.StateDir); err != nil {
		o.Logger.Warn("rolled back, but the record could not be removed", "error", err)
	}
	o.Logger.Info("rolled back to the original configuration", "iface", o.Iface)
	return fmt.Errorf("switching %s into bridge %s: %w; rolled back to the original configuration", o.Iface, o.Bridge, cause)
}

// restoreTo applies PlanRestore(orig, current) through every step, waits
// for the kernel to settle and checks the result against orig. crashAfter
// > 0 is the CrashAfterRestoreStep test hook.
func (c *conn) restoreTo(orig Snapshot, iface, bridge string, log hclog.Logger, crashAfter int) error {
	cur, err := c.snapshot(iface, bridge)
	if err != nil {
		return fmt.Errorf("reading the current configuration: %w", err)
	}
	if cur.NIC == nil {
		return fmt.Errorf("%s no longer exists", iface)
	}
	plan := PlanRestore(orig, cur)
	log.Debug("restore plan", "steps", len(plan.Steps), "plan", plan.String())
	if crashAfter > 0 && crashAfter <= len(plan.Steps) {
		_ = c.applyAll(Plan{Steps: plan.Steps[:crashAfter]})
		return fmt.Errorf("after restore step %d of %d: %w", crashAfter, len(plan.Steps), ErrCrashHook)
	}
	applyErr := c.applyAll(plan)
	diff, err := c.settle(orig, iface, bridge)
	switch {
	case err != nil:
		return errors.Join(applyErr, err)
	case len(diff) > 0:
		return errors.Join(applyErr, fmt.Errorf("the configuration still differs from the record: %s", strings.Join(diff, "; ")))
	}
	if applyErr != nil {
		log.Warn("some restore steps failed but the result matches the record", "error", applyErr)
	}
	return nil
}

// settle polls until the configuration equals want or settleTimeout
// passes, and returns the remaining differences.
func (c *conn) settle(want Snapshot, iface, bridge string) ([]string, error) {
	deadline := time.Now().Add(settleTimeout)
	for {
		have, err := c.snapshot(iface, bridge)
		if err != nil {
			return nil, fmt.Errorf("reading the restored configuration: %w", err)
		}
		diff := Diff(want, have)
		if len(diff) == 0 || time.Now().After(deadline) {
			return diff, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Restore puts the NIC back exactly as recorded in o.StateDir, deletes the
// bridge and removes the record. The record names the NIC and the bridge,
// so o.Iface and o.Bridge may be empty; if set they must match it. With no
// record and no bridge holding the NIC it does nothing (idempotent). On
// failure the record is kept so that Restore can be run again.
//
// Not safe to run concurrently with SwitchOver or Restore on the same NIC.
func Restore(ctx context.Context, o Options) error {
	log := o.withDefaults().Logger
	rec, ok, err := ReadRecord(o.StateDir)
	if err != nil {
		return err
	}
	if !ok {
		return restoreWithoutRecord(o)
	}
	if (o.Iface != "" && o.Iface != rec.Iface) || (o.Bridge != "" && o.Bridge != rec.Bridge) {
		return fmt.Errorf("%s records %s in bridge %s, not %s in %s", recordPath(o.StateDir), rec.Iface, rec.Bridge, o.Iface, o.Bridge)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := openConn(o.NetnsPath)
	if err != nil {
		return err
	}
	defer c.Close()
	log.Info("restoring NIC", "iface", rec.Iface, "bridge", rec.Bridge)
	rec.Phase = PhaseRestoring
	if err := writeRecord(o.StateDir, rec); err != nil {
		return err
	}
	if err := c.restoreTo(rec.Original, rec.Iface, rec.Bridge, log, o.CrashAfterRestoreStep); err != nil {
		if errors.Is(err, ErrCrashHook) {
			return err
		}
		return fmt.Errorf("restoring %s from %s: %w (the record is kept: fix the cause and run restore again)", rec.Iface, recordPath(o.StateDir), err)
	}
	if err := removeRecord(o.StateDir); err != nil {
		return err
	}
	log.Info("restored", "iface", rec.Iface)
	return nil
}

// restoreWithoutRecord is Restore when there is no record: nothing to do,
// unless the NIC sits in the bridge, which cannot be undone blindly.
func restoreWithoutRecord(o Options) error {
	o = o.withDefaults()
	if o.Iface == "" {
		o.Logger.Info("no recorded flat configuration: nothing to restore")
		return nil
	}
	cur, err := TakeSnapshot(o.NetnsPath, o.Iface, o.Bridge)
	if err != nil {
		return err
	}
	if adoptable(cur) {
		return fmt.Errorf("%s is a port of %s but %s holds no record of its original configuration: put it back by hand", o.Iface, o.Bridge, o.StateDir)
	}
	o.Logger.Info("no recorded flat configuration: nothing to restore")
	return nil
}
