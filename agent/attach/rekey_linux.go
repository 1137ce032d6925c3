package attach

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// ErrNoAttachment says Rekey found no host end of the old identity.
var ErrNoAttachment = errors.New("no attachment of that identity")

// RekeySpec names an attachment to give a new identity in place.
type RekeySpec struct {
	HostNetns string // "" = the agent's own
	OldID     string // the identity it was made under
	NewID     string // the identity it is to carry
	IfName    string // container end; default DefaultIfName
	Netns     string // the container's namespace: the pair must end there
}

// Rekey gives an existing attachment the identity NewID without touching
// the traffic: the host end keeps its name, index, bridge port and the
// container keeps its interface and address. The host end gets
// HostIfName(NewID, IfName) as an alternative name (the kernel finds a link
// by its altnames too, so Attach, Detach and Check of NewID find it) and
// the alias Alias(NewID, IfName) (List reports NewID). The pair must end in
// Netns as IfName, else nothing is changed. Idempotent: a pair already
// rekeyed is accepted again. Linux 5.5 or later (altnames).
func Rekey(ctx context.Context, spec RekeySpec) error {
	if spec.IfName == "" {
		spec.IfName = DefaultIfName
	}
	for _, id := range []string{spec.OldID, spec.NewID} {
		if err := ValidateContainerID(id); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	host, err := kernel.OpenNS(spec.HostNetns)
	if err != nil {
		return err
	}
	defer host.Close()
	name := HostIfName(spec.OldID, spec.IfName)
	h, err := host.H.LinkByName(name)
	if kernel.IsNotFound(err) {
		return fmt.Errorf("%s: %w", name, ErrNoAttachment)
	}
	if err != nil {
		return fmt.Errorf("looking up %s: %w", name, err)
	}
	oldAlias, newAlias := Alias(spec.OldID, spec.IfName), Alias(spec.NewID, spec.IfName)
	if al := h.Attrs().Alias; al != oldAlias && al != newAlias {
		return fmt.Errorf("host interface %s is not the attachment of %s/%s (alias %q); leaving it alone",
			name, spec.OldID, spec.IfName, al)
	}
	ctr, err := kernel.OpenNS(spec.Netns)
	if err != nil {
		return err
	}
	defer ctr.Close()
	c, err := ctr.H.LinkByName(spec.IfName)
	if err != nil {
		return fmt.Errorf("looking up %s in %s: %w", spec.IfName, ctr.Path, err)
	}
	if c.Type() != "veth" || h.Attrs().ParentIndex != c.Attrs().Index || c.Attrs().ParentIndex != h.Attrs().Index {
		return fmt.Errorf("%s in %s is not the peer of %s: the attachment of %s is not in that namespace", spec.IfName, ctr.Path, name, spec.OldID)
	}
	alt := HostIfName(spec.NewID, spec.IfName)
	if !slices.Contains(h.Attrs().AltNames, alt) {
		if err := host.H.LinkAddAltName(h, alt); err != nil {
			return fmt.Errorf("naming %s also %s: %w", name, alt, err)
		}
	}
	if h.Attrs().Alias != newAlias {
		if err := host.H.LinkSetAlias(h, newAlias); err != nil {
			return fmt.Errorf("setting the alias of %s: %w", name, err)
		}
	}
	return nil
}
