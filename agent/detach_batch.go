package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/ipam"
)

// Detaches are grouped: releasing an address saves the IPAM state (an
// fsync). A burst of `flatmesh detach` (docker compose down, a scale-in)
// queues its requests; one worker takes the kernel lock once for everything
// queued, cuts every pair off (host end down), releases every address with
// one save, then answers each request. Deleting the pairs waits for RCU in
// the kernel (10-20 ms), so it happens after the answer, in one kernel
// batch, by the worker's delete loop (detach_pending.go). A lone detach is a
// batch of one.

// maxDetachQueue bounds the requests waiting for the worker.
const maxDetachQueue = 256

// detachJob is one request's allocations and, once done, its answer.
type detachJob struct {
	als  []ipam.Allocation
	out  []api.Attachment
	err  error
	done chan struct{}
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

// detachBatched detaches als (and releases their addresses) in the next
// batch and returns what was detached; on error, the attachments detached
// before it.
func (a *Agent) detachBatched(ctx context.Context, als []ipam.Allocation) ([]api.Attachment, error) {
	a.det.once.Do(func() {
		a.det.jobs = make(chan *detachJob, maxDetachQueue)
		a.det.dels = make(chan []attach.DetachSpec, maxDetachQueue)
		go a.detachLoop(a.life)
		go a.deleteLoop(a.life)
	})
	job := &detachJob{als: als, done: make(chan struct{})}
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

// runDetachBatch cuts off the pairs of every job's allocations, marks them
// as being deleted, releases the addresses whose pair is cut off with one
// save, and fills each job's answer; it returns the pairs to delete. The
// caller holds the kernel lock.
func (a *Agent) runDetachBatch(ctx context.Context, batch []*detachJob) []attach.DetachSpec {
	var specs []attach.DetachSpec
	for _, j := range batch {
		for _, al := range j.als {
			specs = append(specs, attach.DetachSpec{ContainerID: al.ID, IfName: al.IfName})
		}
	}
	kerrs := a.ctrs.CutOffMany(ctx, specs)
	var cut []attach.DetachSpec
	for i, err := range kerrs {
		if err == nil {
			cut = append(cut, specs[i])
		}
	}
	a.markDeleting(cut)
	jerrs := make([][]error, len(batch)) // kerrs by job
	var gone []ipam.Allocation
	off := 0
	for k, j := range batch {
		jerrs[k] = kerrs[off : off+len(j.als)]
		off += len(j.als)
		for i, al := range j.als {
			if err := jerrs[k][i]; err == nil {
				gone = append(gone, al)
			} else if j.err == nil {
				j.err = fmt.Errorf("detaching %s %s: %w", cmp.Or(al.Name, al.ID), al.IfName, err)
			}
		}
	}
	if err := a.ipam.ReleaseMany(gone); err != nil {
		for _, j := range batch {
			j.err = cmp.Or(j.err, fmt.Errorf("releasing the addresses: %w", err))
		}
		return cut // as before: the pairs go, the garbage collection releases the addresses
	}
	for k, j := range batch {
		j.out = []api.Attachment{}
		for i, al := range j.als {
			if jerrs[k][i] != nil {
				break // answer what was detached before the first failure
			}
			j.out = append(j.out, a.detached(al))
		}
	}
	return cut
}
