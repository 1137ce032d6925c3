package doctor

import (
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
)

// GatherOptions say what to look at: the agent's settings as configured and
// its API.
type GatherOptions struct {
	ConfigErr   string // the configuration did not load (the rest are defaults)
	Mode        string
	Iface       string
	Bridge      string
	StateDir    string
	Socket      string
	DataPort    int // vxlan_port
	MTUOverride int
	// DirectRouting and WGDirectCleartext are the agent's
	// --direct-routing and --wg-direct-cleartext.
	DirectRouting, WGDirectCleartext bool
	Client                           *api.Client   // the agent's API; nil: do not ask
	Timeout                          time.Duration // per probe; default 2s
}
