package agent

import (
	"context"
	"errors"
	"strings"

	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/agent/docker"
)

// A detach answers once the container is cut off, not once its veth pair
// is gone. Deleting a pair costs 10-20 ms (the kernel waits for RCU) while
// setting its host end down costs well under one, so the detach worker
// (detach_batch.go), with the kernel lock held, sets the host ends down,
// marks the pairs "being deleted", releases the addresses with one save and
// answers; its delete loop then deletes the pairs in one kernel batch
// without the kernel lock and clears the marks.
//
// Why releasing the address first is safe:
//   - A down host end forwards nothing: the bridge port is disabled (its
//     forwarding entries flushed) and the container end has no carrier, so
//     the address still configured inside the container reaches no one.
//   - A released address is not handed out again for the IPAM's cool-down
//     (60 s); the pair is gone within milliseconds. Should a delete fail,
//     the pair stays down, so even an address reused later meets no
//     conflict on the wire.
//   - Other hosts route to blocks, not to addresses: nothing outside this
//     host changes when the pair goes.
//
// Who must not see a pair being deleted (the mark is the guard, as
// "pending" is for attaches):
//   - an attach of the same container waits for its pairs to go (the host
//     end's name is deterministic: it would adopt the pair being deleted);
//   - CNI DEL, CHECK and Docker's Unplug wait as well;
//   - the listings pair allocations with veths, so a released one is never
//     shown; the garbage collection skips marked pairs;
//   - a crash after the answer leaves a down pair without an allocation:
//     the next start (and each garbage collection) deletes such pairs
//     (sweepCutOff). A live attachment is always up.

// markDeleting marks the pairs of specs as being deleted; the caller holds
// the kernel lock (so no garbage collection sees them unmarked).
func (a *Agent) markDeleting(specs []attach.DetachSpec) {
	a.det.mu.Lock()
	defer a.det.mu.Unlock()
	if a.det.deleting == nil {
		a.det.deleting = map[string]chan struct{}{}
	}
	for _, s := range specs {
		k := pendingKey(s.ContainerID, s.IfName)
		if _, ok := a.det.deleting[k]; !ok {
			a.det.deleting[k] = make(chan struct{})
		}
	}
}

// doneDeleting clears the marks of specs and wakes whoever waits for them.
func (a *Agent) doneDeleting(specs []attach.DetachSpec) {
	a.det.mu.Lock()
	defer a.det.mu.Unlock()
	for _, s := range specs {
		k := pendingKey(s.ContainerID, s.IfName)
		if ch, ok := a.det.deleting[k]; ok {
			close(ch)
			delete(a.det.deleting, k)
		}
	}
}

func (a *Agent) isDeleting(id, ifname string) bool {
	a.det.mu.Lock()
	defer a.det.mu.Unlock()
	_, ok := a.det.deleting[pendingKey(id, ifname)]
	return ok
}

// awaitDeleted waits until no pair of container id (any interface) is
// being deleted: a new attach of a container waits for the old pairs to go.
func (a *Agent) awaitDeleted(ctx context.Context, id string) error {
	_, err := a.awaitMarks(ctx, func(k string) bool { return strings.HasPrefix(k, id+"\x00") })
	return err
}

// awaitAllDeleted waits for every pair being deleted now; it reports
// whether there was any.
func (a *Agent) awaitAllDeleted(ctx context.Context) (bool, error) {
	return a.awaitMarks(ctx, func(string) bool { return true })
}

// awaitMarks waits until the pairs being deleted now whose pendingKey
// match are gone; it reports whether there was any.
func (a *Agent) awaitMarks(ctx context.Context, match func(key string) bool) (bool, error) {
	a.det.mu.Lock()
	var wait []chan struct{}
	for k, ch := range a.det.deleting {
		if match(k) {
			wait = append(wait, ch)
		}
	}
	a.det.mu.Unlock()
	for _, ch := range wait {
		select {
		case <-ch:
		case <-ctx.Done():
			return true, ctx.Err()
		case <-a.life.Done():
			return true, errors.New("the agent is stopping")
		}
	}
	return len(wait) > 0, nil
}

// plugIn runs the kernel step of an attach with the kernel lock held. The
// container's interface name may still be held by the end of a pair being
// deleted under another identity (the namespace detached as one container
// and attached at once as another: CNI DEL and ADD with another container
// ID, `flatmesh attach` of a namespace a CNI DEL just left); then it waits
// for the deletes under way and tries once more.
func (a *Agent) plugIn(ctx context.Context, spec attach.Spec) (attach.Result, error) {
	unlock := a.lockKernel()
	res, err := a.ctrs.Attach(ctx, spec)
	unlock()
	if !errors.Is(err, attach.ErrIfNameTaken) {
		return res, err
	}
	if waited, werr := a.awaitAllDeleted(ctx); werr != nil || !waited {
		return res, err
	}
	unlock = a.lockKernel()
	defer unlock()
	return a.ctrs.Attach(ctx, spec)
}

// deleteLoop deletes the pairs the detach worker cut off, everything queued
// in one kernel batch, without the kernel lock (the marks keep everyone
// else away), until life ends. A pair whose delete fails stays down; the
// garbage collection or the next start deletes it.
func (a *Agent) deleteLoop(life context.Context) {
	for {
		var specs []attach.DetachSpec
		select {
		case <-life.Done():
			return
		case s := <-a.det.dels:
			specs = s
		}
		for more := true; more; {
			select {
			case s := <-a.det.dels:
				specs = append(specs, s...)
			default:
				more = false
			}
		}
		// A batch taken is finished even when the agent is stopping.
		for i, err := range a.ctrs.DetachMany(context.WithoutCancel(life), specs) {
			if err != nil {
				a.log.Warn("deleting the veth pair of a detached container (it stays down; retried later)",
					"id", specs[i].ContainerID, "ifname", specs[i].IfName, "error", err)
			}
		}
		a.doneDeleting(specs)
	}
}

// sweepCutOff deletes the pairs of found (our attachments in the kernel)
// left cut off (host end down) without an allocation, by a crash between a
// detach's answer and its delete or by a failed delete. The caller holds
// the kernel lock. Docker's endpoints are left to Docker's own sweep.
func (a *Agent) sweepCutOff(ctx context.Context, found []attach.Attachment) {
	var specs []attach.DetachSpec
	for _, f := range found {
		if f.Up || docker.IsDockerID(f.ContainerID) || a.isPending(f.ContainerID, f.IfName) || a.isDeleting(f.ContainerID, f.IfName) {
			continue
		}
		if _, ok := a.ipam.Lookup(f.ContainerID, f.IfName); ok {
			continue // a down attachment that still has its address: drift, not ours to delete
		}
		specs = append(specs, attach.DetachSpec{ContainerID: f.ContainerID, IfName: f.IfName})
	}
	if len(specs) == 0 {
		return
	}
	for i, err := range a.ctrs.DetachMany(ctx, specs) {
		if err != nil {
			a.log.Warn("deleting a cut-off veth pair", "id", specs[i].ContainerID, "error", err)
			continue
		}
		a.log.Info("deleted the cut-off veth pair of a detached container", "id", specs[i].ContainerID, "ifname", specs[i].IfName)
	}
}

// sweepCutOffAtStart is sweepCutOff before the first pass (kernel lock held).
func (a *Agent) sweepCutOffAtStart(ctx context.Context) {
	found, err := a.ctrs.List(ctx, "")
	if err != nil {
		a.log.Warn("listing attachments for cut-off pairs", "error", err)
		return
	}
	a.sweepCutOff(ctx, found)
}
