package agent

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/internal/kernel"
)

// validateAttach checks an attach request before any lock is taken: the
// namespace must be an nsfs file that is not the host's (checked without
// opening anything that could block), the names must be sane, and a wanted
// address must lie in the cluster's range.
func (a *Agent) validateAttach(req api.AttachRequest) (kernel.Netns, string, netip.Addr, error) {
	if err := api.ValidateTarget("network namespace", req.Netns); err != nil {
		return kernel.Netns{}, "", netip.Addr{}, err
	}
	if req.Name != "" {
		if err := api.ValidateName(req.Name); err != nil {
			return kernel.Netns{}, "", netip.Addr{}, err
		}
	}
	ifname := req.IfName
	if ifname == "" {
		ifname = attach.DefaultIfName
	}
	if err := kernel.ValidateIfName(ifname); err != nil {
		return kernel.Netns{}, "", netip.Addr{}, err
	}
	var want netip.Addr
	if req.IP != "" {
		var err error
		if want, err = netip.ParseAddr(strings.TrimSuffix(req.IP, "/32")); err != nil {
			return kernel.Netns{}, "", netip.Addr{}, fmt.Errorf("--ip %q is not an IP address", req.IP)
		}
		if space := a.cfg.IPAMPrefix(); !space.Contains(want) {
			return kernel.Netns{}, "", netip.Addr{}, fmt.Errorf("address %s is outside the cluster's range %s", want, space)
		}
	}
	ns, err := kernel.ContainerNetns(req.Netns)
	if err != nil {
		return kernel.Netns{}, "", netip.Addr{}, err
	}
	return ns, ifname, want, nil
}
