package attach

import (
	"context"
	"fmt"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// CutOffMany cuts attachments off without deleting them: the host end of
// each pair is set down, so the bridge forwards nothing to it and the
// container end loses its carrier (nothing it sends leaves). Setting a
// link down costs well under a millisecond, deleting a pair 10-20 ms (the
// kernel waits for RCU), so a detach answers after this and deletes the
// pair later (DetachMany). A down host end is also the mark a restarted
// agent recognises a cut-off pair by: attachments are always up. An
// attachment already gone is not an error; a host interface of that name
// that carries another identity is refused. The errors are per spec, in
// order; each spec's HostNetns is ignored.
func CutOffMany(ctx context.Context, hostNetns string, specs []DetachSpec) []error {
	errs := make([]error, len(specs))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	host, err := kernel.OpenNS(hostNetns)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	defer host.Close()
	for i, spec := range specs {
		l, err := detachLink(host, spec)
		if err != nil || l == nil {
			errs[i] = err
			continue
		}
		if err := host.H.LinkSetDown(l); err != nil && !kernel.IsNotFound(err) {
			errs[i] = fmt.Errorf("setting %s down: %w", l.Attrs().Name, err)
		}
	}
	return errs
}
