package agent

import (
	"fmt"
	"sort"

	"github.com/hashicorp/go-hclog"
)

// planeFactory builds a mode's data plane. It must not touch the kernel:
// Setup does that.
type planeFactory func(cfg Config, log hclog.Logger) dataPlane

// planes is the registry of data planes: mode name -> constructor. Each
// plane registers itself from its own file (an init calling registerPlane),
// so a new plane is one file in agent plus its own package; nothing else in
// the agent names a mode. A mode in Modes that has no plane on this
// platform runs as membership only (membershipPlane).
var planes = map[string]planeFactory{}

// registerPlane adds a mode's constructor; registering a mode twice is a
// programming error.
func registerPlane(mode string, f planeFactory) {
	if _, dup := planes[mode]; dup {
		panic(fmt.Sprintf("data plane %q registered twice", mode))
	}
	planes[mode] = f
}

// registeredModes lists the modes with a plane, sorted (for messages and tests).
func registeredModes() []string {
	out := make([]string, 0, len(planes))
	for m := range planes {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// newDataPlane picks the mode's implementation from the registry.
func newDataPlane(cfg Config, log hclog.Logger) dataPlane {
	if f, ok := planes[cfg.Mode]; ok {
		return f(cfg, log)
	}
	log.Warn("the data plane of this mode is not built yet: membership only", "mode", cfg.Mode, "built", registeredModes())
	return membershipPlane{mode: cfg.Mode}
}
