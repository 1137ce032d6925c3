package rig

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/flatmesh/flatmesh/internal/atomicfile"
	"github.com/hashicorp/go-hclog"
)

// Defaults.
const (
	DefaultName     = "fmrig"
	DefaultMachines = 3
	DefaultWorkRoot = "/var/lib/flatmesh-rig"
	maxNameLen      = 15
)

// subnet is the rig's underlay: machine i is 10.98.0.(10+i) on eth0.
var subnet = netip.MustParsePrefix("10.98.0.0/24")

// Options describe a rig. Zero fields take their defaults.
type Options struct {
	Name      string // namespace prefix; default "fmrig"
	Machines  int    // default 3
	Deb       string // the flatmesh .deb to install (required for Provision)
	Provision string // provision.sh; default deploy/vagrant/provision.sh beside this package
	CacheDir  string // rootfs cache; default DefaultCacheDir
	WorkDir   string // machine roots, logs, rig.json; default /var/lib/flatmesh-rig/<Name>
	Rootfs    Rootfs
	Logger    hclog.Logger
	Progress  io.Writer // one line per step for people; nil = silent
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

func (o Options) withDefaults() (Options, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Machines == 0 {
		o.Machines = DefaultMachines
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.WorkDir == "" {
		o.WorkDir = filepath.Join(DefaultWorkRoot, o.Name)
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if !nameRE.MatchString(o.Name) {
		return o, fmt.Errorf("invalid rig name %q: lowercase letters and digits, starting with a letter", o.Name)
	}
	if o.Machines < 1 || o.Machines > 9 {
		return o, fmt.Errorf("invalid machines %d: want 1..9", o.Machines)
	}
	if len(machineNetns(o.Name, o.Machines)) > maxNameLen {
		return o, fmt.Errorf("rig name %q is too long (namespace names must fit %d bytes)", o.Name, maxNameLen)
	}
	if !filepath.IsAbs(o.WorkDir) {
		return o, fmt.Errorf("invalid work dir %q: must be absolute", o.WorkDir)
	}
	return o, nil
}

func switchNetns(rig string) string         { return rig + "-sw" }
func machineNetns(rig string, i int) string { return fmt.Sprintf("%s-m%d", rig, i) }

// Machine is one systemd-nspawn host of the rig.
type Machine struct {
	Name   string       `json:"name"`   // hostname and flatmesh node name: m1..
	Netns  string       `json:"netns"`  // its network namespace (on the lab switch)
	Addr   netip.Prefix `json:"addr"`   // underlay address on eth0
	Root   string       `json:"root"`   // the overlay mount it boots from
	Upper  string       `json:"upper"`  // what the machine wrote (survives reboots)
	Work   string       `json:"work"`   // overlayfs work dir
	Log    string       `json:"log"`    // nspawn's console output
	Nspawn int          `json:"nspawn"` // systemd-nspawn's PID while it runs
}

// state is what the rig made, saved before it is made, so Down (here or in
// another process after Load) removes exactly that.
type state struct {
	Name       string    `json:"name"`
	WorkDir    string    `json:"work_dir"`
	Rootfs     string    `json:"rootfs"`
	Switch     string    `json:"switch"`
	Namespaces []string  `json:"namespaces"`
	Machines   []Machine `json:"machines"`
	KeyFile    string    `json:"key_file"`
}

func statePath(workDir string) string { return filepath.Join(workDir, "rig.json") }

func (s *state) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(statePath(s.WorkDir), append(b, '\n'), atomicfile.Options{Mode: 0o600, NoSync: true})
}

// ErrNoRig says a work dir holds no rig.
var ErrNoRig = errors.New("no rig here")

func loadState(workDir string) (*state, error) {
	b, err := os.ReadFile(statePath(workDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoRig
	}
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", statePath(workDir), err)
	}
	return &s, nil
}

// Timings are the figures a rig run measures.
type Timings struct {
	Rootfs       time.Duration   // building (or finding) the cached tree
	RootfsBuilt  bool            // false: it came from the cache
	Boot         []time.Duration // per machine: spawn to `systemctl is-system-running`
	AgentReady   []time.Duration // per machine: provision.sh (install, enable, restart until READY)
	ProvisionAll time.Duration
}
