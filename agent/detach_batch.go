package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/ipam"
)

// Detaches are grouped: releasing an address saves the IPAM state (an
// fsync). A burst of detaches (`flatmesh detach`, CNI DEL and GC: docker
// compose down, a scale-in, a pod churn) queues its requests; one worker
// takes the kernel lock once for everything queued, cuts every pair off
// (host end down), releases every address with one save, then answers each
// request. Deleting the pairs waits for RCU in the kernel (10-20 ms), so it
// happens after the answer, in one kernel batch, by the worker's delete
// loop (detach_pending.go). A lone detach is a batch of one. This is the
// only way the agent detaches a container it attached (Docker's endpoints
// go through Docker's own Unplug).

// maxDetachQueue bounds the requests waiting for the worker.
const maxDetachQueue = 256

// detachJob is one request and, once done, its answer.
type detachJob struct {
	// als are allocations to detach and release. Each is re-checked by the
	// worker under the kernel lock: one already released (by another
	// detach, a CNI DEL, the garbage collection) or since replaced by a
	// new attach is left alone and not answered, so an address is released
	// and answered once.
	als []ipam.Allocation
	// orphans are pairs to remove that have no allocation (CNI DEL of a
	// container the agent holds no address for, CNI GC of pairs left by a
	// crash); one that got an allocation or an attach in the meantime is
	// left alone, as is one already being deleted.
	orphans []attach.DetachSpec
	out     []api.Attachment // every allocation detached and released
	err     error            // every failure, joined
	done    chan struct{}
}

// detacher is the queue of the detach worker; the zero value is ready (the
// worker starts with the first detach and stops with the agent's life).
type detacher struct {
	once sync.Once
	jobs chan *detachJob
	dels chan []attach.DetachSpec // cut-off pairs, for the delete loop

	mu       sync.Mutex
	deleting map[string]chan struct{} // pairs being deleted, by pendingKey; closed once gone
}

// detachBatched detaches als (and releases their addresses) and removes
// the pairs orphans in the next batch; it returns what was released and
// every failure.
func (a *Agent) detachBatched(ctx context.Context, als []ipam.Allocation, orphans []attach.DetachSpec) ([]api.Attachment, error) {
	a.det.once.Do(func() {
		a.det.jobs = make(chan *detachJob, maxDetachQueue)
		a.det.dels = make(chan []attach.DetachSpec, maxDetachQueue)
		go a.detachLoop(a.life)
		go a.deleteLoop(a.life)
	})
	job := &detachJob{als: als, orphans: orphans, done: make(chan struct{})}
	select {
	case a.det.jobs <- job:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-a.life.Done():
		return nil, errors.New("the agent is stopping")
	}
	select {
	case <-job.done: // once queued, a job runs even if its caller gave up
		return job.out, job.err
	case <-a.life.Done():
		return nil, errors.New("the agent is stopping")
	}
}

// detachLoop runs batches until life ends.
func (a *Agent) detachLoop(life context.Context) {
	for {
		var batch []*detachJob
		select {
		case <-life.Done():
			return
		case j := <-a.det.jobs:
			batch = append(batch, j)
		}
		unlock := a.lockKernel()
		for more := true; more; { // what queued while we waited for the lock
			select {
			case j := <-a.det.jobs:
				batch = append(batch, j)
			default:
				more = false
			}
		}
		cut := a.runDetachBatch(life, batch)
		a.afterIPAMChange()
		unlock()
		for _, j := range batch {
			close(j.done)
		}
		if len(cut) == 0 {
			continue
		}
		select {
		case a.det.dels <- cut:
		case <-life.Done():
			a.doneDeleting(cut) // left down: the next start deletes them
			return
		}
	}
}

// detachItem is one pair of a batch: its job and, unless it is an orphan,
// its allocation.
type detachItem struct {
	job  *detachJob
	al   ipam.Allocation
	spec attach.DetachSpec
	held bool // al is held: release it
}

// claim picks, with the kernel lock held, what of batch is still to do,
// each pair once (see detachJob); refusals go to their job's error.
func (a *Agent) claim(batch []*detachJob) []detachItem {
	var items []detachItem
	seen := map[string]bool{}
	for _, j := range batch {
		j.out = []api.Attachment{}
		for _, al := range j.als {
			k := pendingKey(al.ID, al.IfName)
			if a.isPending(al.ID, al.IfName) {
				j.err = errors.Join(j.err, &api.StatusError{Code: http.StatusConflict,
					Err: fmt.Errorf("%s %s is being attached right now; detach it once the attach is done", cmp.Or(al.Name, al.ID), al.IfName)})
				continue
			}
			if cur, ok := a.ipam.Lookup(al.ID, al.IfName); seen[k] || !ok || cur.Prefix != al.Prefix {
				continue // released already, or a new attachment since
			}
			seen[k] = true
			items = append(items, detachItem{job: j, al: al, spec: attach.DetachSpec{ContainerID: al.ID, IfName: al.IfName}, held: true})
		}
		for _, o := range j.orphans {
			k := pendingKey(o.ContainerID, o.IfName)
			if _, ok := a.ipam.Lookup(o.ContainerID, o.IfName); seen[k] || ok || a.isPending(o.ContainerID, o.IfName) || a.isDeleting(o.ContainerID, o.IfName) {
				continue
			}
			seen[k] = true
			items = append(items, detachItem{job: j, spec: o})
		}
	}
	return items
}

// runDetachBatch cuts off the pairs of what batch claims, marks them as
// being deleted, releases the addresses whose pair is cut off with one
// save, and fills each job's answer; it returns the pairs to delete. The
// caller holds the kernel lock.
func (a *Agent) runDetachBatch(ctx context.Context, batch []*detachJob) []attach.DetachSpec {
	items := a.claim(batch)
	specs := make([]attach.DetachSpec, len(items))
	for i, it := range items {
		specs[i] = it.spec
	}
	kerrs := a.ctrs.CutOffMany(ctx, specs)
	var cut []attach.DetachSpec
	var gone []ipam.Allocation
	for i, it := range items {
		if err := kerrs[i]; err != nil {
			it.job.err = errors.Join(it.job.err, fmt.Errorf("detaching %s %s: %w", cmp.Or(it.al.Name, it.spec.ContainerID), it.spec.IfName, err))
			continue
		}
		cut = append(cut, it.spec)
		if it.held {
			gone = append(gone, it.al)
		}
	}
	a.markDeleting(cut)
	if err := a.ipam.ReleaseMany(gone); err != nil {
		for _, it := range items {
			if it.held {
				it.job.err = errors.Join(it.job.err, fmt.Errorf("releasing %s: %w", it.al.Prefix, err))
			}
		}
		return cut // as before: the pairs go, the garbage collection releases the addresses
	}
	for i, it := range items {
		if kerrs[i] == nil && it.held {
			it.job.out = append(it.job.out, a.detached(it.al))
		}
	}
	return cut
}
