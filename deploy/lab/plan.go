package lab

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"time"
)

// Addressing of the two lab variants.
var (
	vxlanUnderlay = netip.MustParsePrefix("10.99.0.0/24")
	// flat: one /16 LAN; the plain machine is the router, hosts count down
	// from 172.16.44.254 (as in the example), containers get
	// addresses from flatRange, which holds no host address.
	flatLAN    = netip.MustParsePrefix("172.16.0.0/16")
	flatRouter = netip.MustParsePrefix("172.16.0.1/16")
	flatRange  = netip.MustParsePrefix("172.16.45.0/24")
)

// Host is one agent host of the lab.
type Host struct {
	Index    int          `json:"index"`             // 1-based
	Name     string       `json:"name"`              // agent name, "h1"
	Netns    string       `json:"netns"`             // "<lab>-h1"
	Underlay netip.Prefix `json:"underlay"`          // address on eth0
	Gateway  netip.Addr   `json:"gateway,omitzero"`  // default route (flat mode)
	Socket   string       `json:"socket"`            // agent API socket
	StateDir string       `json:"state_dir"`         // agent --state-dir
	LogFile  string       `json:"log_file"`          // agent stdout+stderr
	PID      int          `json:"pid"`               // agent process; 0 when stopped
	Args     []string     `json:"args"`              // base agent arguments (no --join)
	Dir      string       `json:"dir"`               // WorkDir/<name>
	Started  time.Time    `json:"started,omitzero"`  // last agent start
	Stopped  bool         `json:"stopped,omitempty"` // stopped on purpose
}

// Addr is the host's underlay address without the prefix length.
func (h Host) Addr() netip.Addr { return h.Underlay.Addr() }

// Container is one attached container namespace.
type Container struct {
	Name    string       `json:"name"`  // container name given to attach, "c11"
	Host    string       `json:"host"`  // host name, "h1"
	Netns   string       `json:"netns"` // "<lab>-h1c1"
	IP      netip.Prefix `json:"ip"`    // as attach answered, e.g. 10.213.0.2/26
	Gateway netip.Addr   `json:"gateway,omitzero"`
	IfName  string       `json:"ifname"`
	MAC     string       `json:"mac"`
	MTU     int          `json:"mtu"`
}

// Machine is a namespace of the lab that runs no agent: the switch, or the
// plain machine of the flat variant.
type Machine struct {
	Name  string       `json:"name"`
	Netns string       `json:"netns"`
	Addr  netip.Prefix `json:"addr,omitzero"`
}

// description is everything the lab made; it is persisted as lab.json.
type description struct {
	Version        int          `json:"version"`
	Name           string       `json:"name"`
	Mode           string       `json:"mode"`
	WorkDir        string       `json:"work_dir"`
	Binary         string       `json:"binary"`
	KeyFile        string       `json:"key_file,omitempty"`
	KeyGenerated   bool         `json:"key_generated,omitempty"`
	Insecure       bool         `json:"insecure,omitempty"`
	GossipTiming   string       `json:"gossip_timing"`
	LogLevel       string       `json:"log_level"`
	ExtraAgentArgs []string     `json:"extra_agent_args,omitempty"`
	FlatRange      netip.Prefix `json:"flat_range,omitzero"`
	Switch         Machine      `json:"switch"`
	Plain          *Machine     `json:"plain,omitempty"`
	Subnets        int          `json:"subnets,omitempty"` // 2: routed variant (routed.go)
	Router         *Machine     `json:"router,omitempty"`  // the routed variant's router
	Hosts          []Host       `json:"hosts"`
	Containers     []Container  `json:"containers"`
	// Namespaces lists every namespace in creation order; a name is added
	// before the namespace is created, so a crash leaves no unknown one.
	Namespaces []string  `json:"namespaces"`
	Created    time.Time `json:"created"`
}

const descriptionVersion = 1

func newDescription(o Options) *description {
	d := &description{
		Version:        descriptionVersion,
		Name:           o.Name,
		Mode:           o.Mode,
		WorkDir:        o.WorkDir,
		Binary:         o.Binary,
		KeyFile:        o.KeyFile,
		Insecure:       o.Insecure,
		GossipTiming:   o.GossipTiming,
		LogLevel:       o.LogLevel,
		ExtraAgentArgs: append([]string(nil), o.ExtraAgentArgs...),
		Switch:         Machine{Name: "sw", Netns: switchNetns(o.Name)},
		Created:        time.Now(),
	}
	d.planRouter(o.Subnets)
	if o.Mode == ModeFlat {
		d.FlatRange = flatRange
		d.Plain = &Machine{Name: "pm", Netns: plainNetns(o.Name), Addr: flatRouter}
	}
	return d
}

// planHost computes host i (1-based) of the lab: names, addresses, files.
func (d *description) planHost(i int) (Host, error) {
	h := Host{Index: i, Name: hostName(i), Netns: hostNetns(d.Name, i)}
	switch d.Mode {
	case ModeFlat:
		if i > 200 {
			return h, fmt.Errorf("host %d: the flat lab has addresses for 200 hosts", i)
		}
		a := flatLAN.Addr().As4()
		a[2], a[3] = 44, byte(255-i)
		h.Underlay = netip.PrefixFrom(netip.AddrFrom4(a), flatLAN.Bits())
		h.Gateway = flatRouter.Addr()
	default:
		if i > 250 {
			return h, fmt.Errorf("host %d: the vxlan lab has addresses for 250 hosts", i)
		}
		a := vxlanUnderlay.Addr().As4()
		a[3] = byte(i)
		h.Underlay = netip.PrefixFrom(netip.AddrFrom4(a), vxlanUnderlay.Bits())
		if d.Router != nil {
			h.Underlay, h.Gateway = routedHost(i)
		}
	}
	h.Dir = filepath.Join(d.WorkDir, h.Name)
	h.Socket = filepath.Join(h.Dir, "flatmesh.sock")
	h.StateDir = filepath.Join(h.Dir, "state")
	h.LogFile = filepath.Join(h.Dir, "agent.log")
	h.Args = d.agentArgs(h)
	return h, nil
}

// agentArgs are the arguments every start of host h's agent gets. --join is
// not among them: Up adds it for the first start, and a restarted agent
// rejoins from the member list it persisted.
func (d *description) agentArgs(h Host) []string {
	args := []string{"agent",
		"--name", h.Name,
		"--bind", h.Addr().String(),
		"--iface", "eth0",
		"--mode", d.Mode,
		"--cluster", d.Name,
		"--state-dir", h.StateDir,
		"--socket", h.Socket,
		"--gossip-timing", d.GossipTiming,
		"--log-level", d.LogLevel,
		"--docker-plugin-dir", filepath.Join(h.Dir, "plugins"), "--docker-socket", filepath.Join(h.Dir, "docker.sock"),
	}
	if d.Insecure {
		args = append(args, "--insecure")
	} else {
		args = append(args, "--key-file", d.KeyFile)
	}
	if d.Mode == ModeFlat {
		args = append(args, "--flat-range", d.FlatRange.String())
	}
	return append(args, d.ExtraAgentArgs...)
}

// hostByName finds a host by its name ("h1") or its namespace name.
func (d *description) hostByName(name string) (*Host, error) {
	for i := range d.Hosts {
		if d.Hosts[i].Name == name || d.Hosts[i].Netns == name {
			return &d.Hosts[i], nil
		}
	}
	return nil, fmt.Errorf("lab %s has no host %q", d.Name, name)
}

// containersOn counts the containers attached through host.
func (d *description) containersOn(host string) int {
	n := 0
	for _, c := range d.Containers {
		if c.Host == host {
			n++
		}
	}
	return n
}

// addNamespace records ns before it is created (no duplicates).
func (d *description) addNamespace(ns string) {
	for _, n := range d.Namespaces {
		if n == ns {
			return
		}
	}
	d.Namespaces = append(d.Namespaces, ns)
}

// teardownOrder is the namespaces to delete: containers first, then hosts,
// the plain machine and the switch last (reverse creation order), plus any
// extra names found on the system that match the lab's pattern.
func (d *description) teardownOrder(found []string) []string {
	seen := map[string]bool{}
	var out []string
	for i := len(d.Namespaces) - 1; i >= 0; i-- {
		if n := d.Namespaces[i]; !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	re := nsRegexp(d.Name)
	var extra []string
	for _, n := range found {
		if !seen[n] && re.MatchString(n) {
			seen[n] = true
			extra = append(extra, n)
		}
	}
	// Unknown leftovers (a crashed older lab) go first: they may hold links
	// into the switch.
	return append(extra, out...)
}
