package agent

import (
	"context"
	"time"

	"github.com/flatmesh/flatmesh/agent/attach"
)

// Who writes the kernel (the rule; docs/architecture.md repeats it):
//
//   - Every path of the agent that changes the kernel holds the kernel lock
//     (Agent.kernelMu) while it does: the data plane's Setup, each reconcile
//     pass (Reconcile, then the garbage collection of vanished containers),
//     the kernel step of an attach and of a detach, the API's flat restore,
//     and the teardown of a purge or restore at exit.
//   - The exception: the detach worker's delete loop deletes the veth pairs
//     it cut off (host end down) and marked "being deleted" without the
//     lock, after the detach answered; the mark keeps every other path
//     away from them (detach_pending.go).
//   - Nothing waits for the network or for a peer with the lock held: an
//     attach allocates its address (which may wait up to a minute for a
//     block from a peer) and probes the LAN for it (ARP) first, and takes
//     the lock only to plug the veth in. An attach between allocation and
//     kernel step is "pending": the garbage collection leaves its address
//     alone and a detach of it is refused until it is done.
//   - Across processes the state-dir lock (internal/atomicfile.LockDir)
//     keeps one agent per state dir, and the CLI's offline `flat restore`
//     takes it too, so it never runs beside a live agent.
//   - Shutdown cancels Agent.life: the loops end and in-flight requests
//     return with the context's error before the teardown takes the lock.

// lockKernel takes the kernel lock and returns its release.
func (a *Agent) lockKernel() (unlock func()) {
	a.kernelMu.Lock()
	return a.kernelMu.Unlock
}

// containerKernel plugs container veths in and out of the host and lists
// them. The agent calls Attach and CutOffMany with the kernel lock held;
// List is read-only; every detach goes through the detach worker
// (detach_batch.go): CutOffMany, then DetachMany. Safe for concurrent use.
type containerKernel interface {
	Attach(ctx context.Context, spec attach.Spec) (attach.Result, error)
	// List returns our attachments on bridge (on any bridge or none when "").
	List(ctx context.Context, bridge string) ([]attach.Attachment, error)
	// DetachMany is Detach for many in one kernel batch; errors per spec.
	// The detach worker calls it WITHOUT the kernel lock, on pairs it has
	// cut off and marked as being deleted (detach_pending.go).
	DetachMany(ctx context.Context, specs []attach.DetachSpec) []error
	// CutOffMany sets the host ends down (kernel lock held); errors per spec.
	CutOffMany(ctx context.Context, specs []attach.DetachSpec) []error
	// Rekey gives an attachment a new identity in place (kernel lock held).
	Rekey(ctx context.Context, spec attach.RekeySpec) error
}

// attachKernel is containerKernel on package attach, in the agent's own
// namespace.
type attachKernel struct{}

var _ containerKernel = attachKernel{}

func (attachKernel) Attach(ctx context.Context, spec attach.Spec) (attach.Result, error) {
	return attach.Attach(ctx, spec)
}

func (attachKernel) DetachMany(ctx context.Context, specs []attach.DetachSpec) []error {
	return attach.DetachMany(ctx, "", specs)
}

func (attachKernel) CutOffMany(ctx context.Context, specs []attach.DetachSpec) []error {
	return attach.CutOffMany(ctx, "", specs)
}

func (attachKernel) Rekey(ctx context.Context, spec attach.RekeySpec) error {
	return attach.Rekey(ctx, spec)
}

func (attachKernel) List(ctx context.Context, bridge string) ([]attach.Attachment, error) {
	return attach.List(ctx, "", bridge)
}

// passRecord is what status shows of the reconcile loop.
type passRecord struct {
	at      time.Time // end of the last pass
	err     error     // its error, nil when it succeeded
	applied time.Time // end of the last pass that succeeded
}

// pendingKey names one attachment (container identity and interface).
func pendingKey(id, ifname string) string { return id + "\x00" + ifname }

// beginAttach marks an attachment as in flight; false when one already is.
func (a *Agent) beginAttach(id, ifname string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := pendingKey(id, ifname)
	if a.pending[k] {
		return false
	}
	a.pending[k] = true
	return true
}

func (a *Agent) endAttach(id, ifname string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.pending, pendingKey(id, ifname))
}

func (a *Agent) isPending(id, ifname string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pending[pendingKey(id, ifname)]
}
