// Package lab builds a multi-host flatmesh cluster on one machine out of
// network namespaces: a "switch" namespace holding a Linux bridge, one
// namespace per host joined to it by a veth pair, a real `flatmesh agent`
// process per host (its own state dir, socket and log file), and container
// namespaces attached through each host's agent. In flat mode a plain machine
// (no agent) sits on the same switch as the LAN's router.
//
// Everything the lab makes is recorded in WorkDir/lab.json before it is made,
// so Down (from this process or, after Load, from another one) removes every
// namespace, link and process of the lab and nothing else. The lab creates no
// link in the caller's namespace: every veth is created from inside the
// switch namespace with its peer placed directly in the host namespace.
//
// Names: hosts are "h1".."hN" in namespaces "<lab>-h1"..; the switch is
// "<lab>-sw", the plain machine "<lab>-pm", containers "<lab>-h<i>c<j>" with
// container names "c<i><j>". Every generated namespace name fits 15 bytes.
package lab

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/flatmesh/flatmesh/overlay"
	"github.com/hashicorp/go-hclog"
)

// Data-plane modes the lab can build.
const (
	ModeVXLAN = overlay.ModeVXLAN // hosts on 10.99.0.0/24, VXLAN overlay between them
	ModeFlat  = overlay.ModeFlat  // hosts on a 172.16.0.0/16 LAN with a plain router machine
)

// Defaults.
const (
	DefaultName       = "fmlab"
	DefaultHosts      = 3
	DefaultContainers = 2
	DefaultWorkRoot   = "/run/flatmesh-lab"
	// NoContainers asks for hosts without containers (ContainersPerHost's zero
	// value means "the default").
	NoContainers = -1

	maxHosts      = 99
	maxContainers = 99
	maxNameLen    = 15 // IFNAMSIZ-1: generated names also serve as link names
)

// Options describe a lab to build. Zero fields take their defaults.
type Options struct {
	Name              string // lab name and namespace prefix; default "fmlab"
	Hosts             int    // agent hosts; default 3
	Mode              string // ModeVXLAN (default) or ModeFlat
	ContainersPerHost int    // 0 = default (2); NoContainers for none
	// Binary is the flatmesh executable the agents and CLI calls run; default
	// the running executable (which must then be flatmesh, not a test binary).
	Binary string
	// KeyFile is the gossip key; empty and !Insecure: the lab writes one with
	// `flatmesh keygen` into WorkDir.
	KeyFile        string
	Insecure       bool
	GossipTiming   string        // agent --gossip-timing; default "local"
	LogLevel       string        // agent --log-level; default "info"
	WorkDir        string        // default /run/flatmesh-lab/<Name>
	Progress       io.Writer     // one line per step for people; nil = silent
	Logger         hclog.Logger  // debug detail (commands run); nil = none
	ExtraAgentArgs []string      // appended to every agent's arguments
	Timeout        time.Duration // readiness and convergence; default 30s + 2s/host
	// Subnets 2 (overlay modes) puts odd hosts on 10.99.0.0/24 and even ones on
	// 10.99.1.0/24, joined by a router namespace (routed.go); 0 or 1: one.
	Subnets int
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*[a-z0-9]$|^[a-z]$`)

// withDefaults fills the zero fields and validates the result. self is the
// running executable (os.Executable), used when Binary is empty.
func (o Options) withDefaults(self string) (Options, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Hosts == 0 {
		o.Hosts = DefaultHosts
	}
	if o.Mode == "" {
		o.Mode = ModeVXLAN
	}
	switch {
	case o.ContainersPerHost == 0:
		o.ContainersPerHost = DefaultContainers
	case o.ContainersPerHost == NoContainers:
		o.ContainersPerHost = 0
	case o.ContainersPerHost < 0:
		return o, fmt.Errorf("invalid containers per host %d: want 0..%d (or NoContainers)", o.ContainersPerHost, maxContainers)
	}
	if o.GossipTiming == "" {
		o.GossipTiming = "local"
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.WorkDir == "" {
		o.WorkDir = filepath.Join(DefaultWorkRoot, o.Name)
	}
	if o.Timeout == 0 {
		o.Timeout = 30*time.Second + time.Duration(o.Hosts)*2*time.Second
	}
	if o.Binary == "" {
		if strings.HasSuffix(filepath.Base(self), ".test") {
			return o, fmt.Errorf("options: Binary is required when running from a test binary (%s)", self)
		}
		o.Binary = self
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return o, o.validate()
}

func (o Options) validate() error {
	if !nameRE.MatchString(o.Name) {
		return fmt.Errorf("invalid lab name %q: use lowercase letters, digits and '-', starting with a letter", o.Name)
	}
	if o.Mode != ModeVXLAN && o.Mode != ModeFlat && o.Mode != ModeWireGuard {
		return fmt.Errorf("invalid mode %q: the lab builds %q, %q or %q", o.Mode, ModeVXLAN, ModeFlat, ModeWireGuard)
	}
	if o.Hosts < 1 || o.Hosts > maxHosts {
		return fmt.Errorf("invalid hosts %d: want 1..%d", o.Hosts, maxHosts)
	}
	if o.ContainersPerHost > maxContainers {
		return fmt.Errorf("invalid containers per host %d: want 0..%d", o.ContainersPerHost, maxContainers)
	}
	longest := containerNetns(o.Name, o.Hosts, max(o.ContainersPerHost, 9))
	if len(longest) > maxNameLen {
		return fmt.Errorf("lab name %q is too long: namespace %q would exceed %d bytes (use at most %d bytes)",
			o.Name, longest, maxNameLen, maxNameLen-(len(longest)-len(o.Name)))
	}
	if !filepath.IsAbs(o.WorkDir) {
		return fmt.Errorf("invalid work dir %q: must be an absolute path", o.WorkDir)
	}
	if !filepath.IsAbs(o.Binary) {
		return fmt.Errorf("invalid binary %q: must be an absolute path", o.Binary)
	}
	if o.KeyFile != "" && o.Insecure {
		return fmt.Errorf("options: KeyFile %q and Insecure are exclusive", o.KeyFile)
	}
	if err := o.validateSubnets(); err != nil {
		return err
	}
	if o.GossipTiming != "local" && o.GossipTiming != "lan" {
		return fmt.Errorf("invalid gossip timing %q: want local or lan", o.GossipTiming)
	}
	return nil
}

// nsRegexp matches every namespace name a lab called name can make, and no
// other lab's (names are anchored and the suffixes are fixed shapes).
func nsRegexp(name string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `-(sw|pm|h[0-9]+(c[0-9]+)?)$`)
}

func switchNetns(lab string) string { return lab + "-sw" }
func plainNetns(lab string) string  { return lab + "-pm" }
func hostName(i int) string         { return "h" + strconv.Itoa(i) }
func hostNetns(lab string, i int) string {
	return lab + "-" + hostName(i)
}
func containerNetns(lab string, i, j int) string {
	return fmt.Sprintf("%s-h%dc%d", lab, i, j)
}

// containerName is "c<i><j>" (c12 = host 1, container 2); with a host or
// container number above 9 a dash keeps it unambiguous ("c10-3").
func containerName(i, j int) string {
	if i < 10 && j < 10 {
		return fmt.Sprintf("c%d%d", i, j)
	}
	return fmt.Sprintf("c%d-%d", i, j)
}

// selfExecutable is os.Executable with symlinks resolved, "" on error.
func selfExecutable() string {
	p, err := os.Executable()
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}
