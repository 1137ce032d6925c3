package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/internal/atomicfile"
	"github.com/flatmesh/flatmesh/ipam"
	"github.com/hashicorp/go-hclog"
)

// Options are the inputs of New.
type Options struct {
	Config  Config
	Logger  hclog.Logger
	Version string
}

// Agent is one flatmesh daemon. Run owns its lifecycle; the API handlers and
// the reconcile loop run on their own goroutines and share state only
// through the cluster, the allocator (both safe for concurrent use) and the
// fields guarded by mu. Every write to the kernel takes the kernel lock
// (kernelMu, see kernellock.go and docs/architecture.md).
type Agent struct {
	cfg     Config
	log     hclog.Logger
	version string
	started time.Time

	reloadMu sync.Mutex // serialises Reload
	logLevel string     // the level Reload last set; "" = cfg.LogLevel

	cl    *cluster.Cluster
	clRef atomic.Pointer[cluster.Cluster] // cl, for callbacks that may run before Run assigns cl
	ipam  *ipam.Allocator
	plane dataPlane
	ctrs  containerKernel // container veths: package attach, or a fake in tests
	srv   *api.Server
	dns   *dnsService // nil when cluster DNS is off

	nsPaths netnsPaths // path each attached namespace ID was attached by (containers_ids.go)
	det     detacher   // the detach batches (detach_batch.go)

	kick     chan struct{}         // wakes the reconcile loop; buffered 1
	changed  changeSignal          // fired with every kick (change_signal.go)
	metaKick chan struct{}         // wakes the metadata sync; buffered 1
	leave    chan api.LeaveRequest // an API leave request ends Run
	done     chan struct{}         // closed when Run is shutting down
	joined   chan struct{}         // closed when the join at start returned

	memberWatch memberWatch // what the last member change poked (member_change.go)

	// life ends when Run starts shutting down: the loops stop and every
	// in-flight API request (an attach waiting for a block, a probe) is
	// cancelled.
	life     context.Context
	stopLife context.CancelFunc

	kernelMu sync.Mutex // the kernel lock: every kernel write holds it, no long wait does

	loopRunning atomic.Bool // the reconcile loop runs (attach waits for its passes)

	mu      sync.Mutex
	pending map[string]bool // attachments allocated but not yet in the kernel: GC leaves them alone
	lastRec passRecord      // the last reconcile pass, for status
	passes  passTracker     // snapshots and finished passes (attach_ready.go)

	passEnded changeSignal // fired when a reconcile pass finishes (attach_ready.go)

	sd      notifier // systemd readiness, status and watchdog (notify.go)
	metrics *metrics // nil unless --metrics-addr (metrics.go)
}

// New returns an agent that has created nothing yet. It does not check the
// configuration: Load (and LoadWith) did.
func New(o Options) (*Agent, error) {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	life, stop := context.WithCancel(context.Background())
	return &Agent{
		cfg:      o.Config,
		log:      o.Logger,
		version:  o.Version,
		ctrs:     attachKernel{},
		kick:     make(chan struct{}, 1),
		metaKick: make(chan struct{}, 1),
		leave:    make(chan api.LeaveRequest, 1),
		done:     make(chan struct{}),
		life:     life,
		stopLife: stop,
		pending:  map[string]bool{},
		joined:   make(chan struct{}),
	}, nil
}

// Run starts the agent and blocks until ctx ends (a signal) or a leave
// request arrives; either way it leaves the cluster gracefully and returns
// nil. The data plane stays in the kernel unless a purge or restore was asked.
func (a *Agent) Run(ctx context.Context) error {
	// Every setting that depends on the host is checked before anything
	// is created (state dir, IPAM seed, kernel objects).
	if err := a.cfg.CheckHost(HostCheck{}); err != nil {
		return err
	}
	a.started = time.Now()
	defer a.stopLife()
	if err := a.prepareDirs(); err != nil {
		return err
	}
	// One agent per state dir, and no offline restore while it runs.
	lock, err := atomicfile.LockDir(a.cfg.StateDir)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	keys, err := a.loadKeys()
	if err != nil {
		return err
	}
	// The plane first (it touches nothing yet): the allocator's layout
	// depends on what the plane can do.
	a.plane = newDataPlane(a.cfg, a.log.Named("dataplane"))
	if a.ipam, err = a.openIPAM(); err != nil {
		return err
	}
	a.notifyStatus("setting up the " + a.cfg.Mode + " data plane")
	unlock := a.lockKernel()
	meta, err := a.plane.Setup(ctx)
	if err == nil {
		a.rekeyLegacy(ctx) // before the first pass's garbage collection
		// Pairs a crash left cut off (detach_pending.go).
		a.sweepCutOffAtStart(ctx)
	}
	unlock()
	if err != nil {
		return fmt.Errorf("setting up the %s data plane: %w", a.cfg.Mode, err)
	}
	a.startDNS()
	defer a.stopDNS()
	if a.cl, err = a.startCluster(keys, meta); err != nil {
		return err
	}
	a.clRef.Store(a.cl)
	defer a.cl.Shutdown()
	if err := a.startMetrics(); err != nil {
		a.leaveCluster()
		return err
	}
	defer a.stopMetrics()
	// The loop starts below; requests served before it runs must already
	// know to wait for its first pass (awaitFirstPass).
	a.loopRunning.Store(true)
	a.srv, err = api.Listen(a.cfg.Socket, a.routes())
	if err != nil {
		a.leaveCluster()
		return err
	}
	go func() {
		if err := a.srv.Serve(); err != nil {
			a.log.Error("api stopped", "error", err)
		}
	}()
	stopDocker := a.startDocker()
	a.log.Info("agent started", "name", a.cfg.Name, "cluster", a.cfg.Cluster, "mode", a.cfg.Mode,
		"advertise", a.cfg.Advertise.String(), "socket", a.cfg.Socket, "encrypted", keys != nil)
	a.notifyListening()

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); a.joinAtStart(a.life) }()
	go func() { defer wg.Done(); a.metaLoop(a.life) }()
	go func() { defer wg.Done(); a.reconcileLoop(a.life) }()

	var req api.LeaveRequest
	select {
	case <-ctx.Done():
		a.log.Info("signal received: leaving the cluster")
	case req = <-a.leave:
		a.log.Info("leave requested", "purge", req.Purge, "restore", req.Restore)
	}
	a.notifyStopping(fmt.Sprintf("purge=%v restore=%v", req.Purge, req.Restore))
	close(a.done)
	stopDocker()
	a.stopLife() // ends the loops and cancels in-flight requests
	wg.Wait()
	a.leaveCluster()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(shutCtx)
	if err := a.ipam.Close(); err != nil {
		a.log.Error("saving IPAM state", "error", err)
	}
	return a.teardown(req)
}

// teardown removes kernel state when a leave asked for it.
func (a *Agent) teardown(req api.LeaveRequest) error {
	if !req.Purge && !req.Restore {
		return nil
	}
	defer a.lockKernel()()
	var errs []error
	if req.Purge {
		a.log.Info("purging the data plane")
		errs = append(errs, a.plane.Purge(context.Background()))
	}
	if req.Restore {
		a.log.Info("restoring the original NIC configuration")
		errs = append(errs, a.plane.Restore(context.Background()))
	}
	return errors.Join(errs...)
}

func (a *Agent) leaveCluster() {
	if err := a.cl.Leave(5 * time.Second); err != nil {
		a.log.Warn("graceful leave failed", "error", err)
	}
}

// prepareDirs creates the state directory and, for the default socket path,
// its runtime directory. A custom socket directory must already exist
// (Load checked it).
func (a *Agent) prepareDirs() error {
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("creating state dir: %w", err)
	}
	if a.cfg.Socket == settingDefault("socket") {
		if err := os.MkdirAll(filepath.Dir(a.cfg.Socket), 0o755); err != nil {
			return fmt.Errorf("creating socket dir: %w", err)
		}
	}
	return nil
}

func (a *Agent) loadKeys() ([][]byte, error) {
	if a.cfg.KeyFile == "" {
		a.log.Warn("gossip is NOT encrypted (--insecure): anyone on the underlay can join and read cluster state")
		return nil, nil
	}
	keys, err := cluster.ReadKeyFile(a.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	return keys, nil
}

func (a *Agent) startCluster(keys [][]byte, meta cluster.Meta) (*cluster.Cluster, error) {
	meta.Mode = a.cfg.Mode
	meta.Cluster = a.cfg.Cluster
	meta.Underlay = a.cfg.Advertise.Addr()
	meta.Fingerprint = a.cfg.Fingerprint()
	meta.IPAMSeed = a.ipam.SeedID()
	meta.IPAMUsed = a.ipam.Used()
	meta.IPAMDigest = a.ipam.DigestValue()
	cl, err := cluster.New(cluster.Config{
		Name:      a.cfg.Name,
		Bind:      a.cfg.Bind,
		Advertise: a.cfg.Advertise,
		Meta:      meta,
		Keys:      keys,
		Insecure:  a.cfg.Insecure,
		StateDir:  a.cfg.StateDir,
		Logger:    a.log.Named("cluster"),
		App:       newGossip(a),
		OnChange:  a.membersChanged,
		Timing:    a.cfg.GossipTiming,
	})
	if err != nil {
		return nil, fmt.Errorf("starting gossip: %w", err)
	}
	return cl, nil
}

// joinAtStart joins the --join addresses, or else the members saved by a
// previous run, retrying with backoff until one answers or the agent stops.
func (a *Agent) joinAtStart(ctx context.Context) {
	defer close(a.joined)
	var err error
	if len(a.cfg.Join) > 0 {
		err = a.cl.JoinRetry(ctx, a.cfg.Join)
	} else {
		err = a.cl.RejoinPersisted(ctx)
	}
	if err != nil && ctx.Err() == nil {
		a.log.Error("joining the cluster failed", "error", err)
	}
	a.poke()
}

// poke wakes the reconcile loop without blocking.
func (a *Agent) poke() {
	a.changed.fire()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Reload applies what can change without a restart (the log level) and says
// what cannot.
// It never writes a.cfg, which handlers read without a lock; the current
// level lives in logLevel, guarded by reloadMu. Safe for concurrent use.
func (a *Agent) Reload(next Config) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.logLevel == "" {
		a.logLevel = a.cfg.LogLevel
	}
	if next.LogLevel != a.logLevel {
		a.log.SetLevel(hclog.LevelFromString(next.LogLevel))
		a.log.Info("log level changed", "from", a.logLevel, "to", next.LogLevel)
		a.logLevel = next.LogLevel
	}
	cur, nxt := a.cfg, next
	cur.LogLevel, nxt.LogLevel = "", ""
	if fmt.Sprint(cur) != fmt.Sprint(nxt) {
		a.log.Warn("reloaded: only the log level changes without a restart; restart the agent to apply the other changed settings")
	} else {
		a.log.Info("reloaded configuration: nothing else changed")
	}
}
