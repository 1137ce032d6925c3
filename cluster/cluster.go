// Package cluster is flatmesh's membership layer: a wrapper around
// hashicorp/memberlist that every data plane builds on.
//
// # Design
//
// Metadata. Each member gossips a small versioned Meta (mode, cluster name,
// underlay address, settings fingerprint, VTEP MAC, WireGuard key and port,
// IPAM identity). The encoding is compact binary whose first byte is the
// format version; DecodeMeta never panics on bytes from the network (fuzzed).
//
// Refusal. A peer is refused when its metadata does not decode, when its
// cluster name or settings fingerprint differ from ours, or when its underlay
// address belongs to another live member (the Vagrant 10.0.2.15 trap). The
// rules run in two places: memberlist's MergeDelegate, on both sides of a
// join (whole-cluster merges, where the application's CheckMerge also runs),
// and its AliveDelegate, for nodes learnt one by one from gossip. Join turns
// memberlist's errors back into sentences that say what was refused and why,
// and recognises a gossip key mismatch.
//
// Membership view. memberlist's public API lists only live nodes and never
// says whether a node failed or left. The Cluster keeps its own table, fed by
// memberlist's join/update/leave events: a node that disappears is "left" if
// memberlist says it announced its own death (memberlist.StateLeft) or its
// last metadata carried Meta.Leaving (set by Cluster.Leave just before it
// leaves), "failed" otherwise. Failed and left members are forgotten after
// Config.ReapAfter (24 h by default). memberlist does not report suspicion to
// delegates: Members asks it which live members it suspects and reports them
// as "suspect".
//
// Application messages. Broadcast frames a payload with the origin's name
// and a sequence number (starting at the wall clock in ns, so unique across
// restarts) and queues it in a memberlist TransmitLimitedQueue. A receiver
// delivers each (origin, seq) once (a bounded FIFO of the last 4096 ids) and
// queues the same message once more for re-broadcast, as Serf does, because
// memberlist alone retransmits only from the sender. SendTo is a reliable
// (TCP) point-to-point message. The first byte of every message is its kind.
//
// Signatures. Every application message and the push-pull state is signed
// with this agent's ed25519 identity key (StateDir/identity.key, 0600); its
// public half is Meta.SignKey. Members pin the first key they see for a
// name (StateDir/pins.json) and refuse a member whose metadata later
// presents another key; receivers verify every message against the
// sender's pin and drop (count, log) the rest, so the sender an AppDelegate
// method gets is authenticated. Relays forward the origin's signed bytes.
// ForgetPin (rmpeer) forgets a gone host's pin on every member. See
// signing.go; memberlist's own alive/suspect/dead messages stay unsigned.
//
// Encryption and persistence. Gossip is encrypted with a memberlist keyring
// built from Config.Keys (first key primary); without keys New refuses to
// start unless Config.Insecure is set. With a StateDir, the keys in use are
// saved to StateDir/keyring (0600) and reloaded when no keys are given, and
// the members worth rejoining are saved to StateDir/peers.json (atomically,
// at most once per second on membership changes, and on Leave/Shutdown), so
// that RejoinPersisted brings a restarted agent back without --join.
//
// Callbacks. memberlist calls its delegates from its network goroutines,
// sometimes with its locks held: nothing here blocks or calls back into
// memberlist from a callback. OnChange runs on a dedicated goroutine (changes
// coalesce), and AppDelegate methods must not block either.
package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// DefaultPort is the default gossip port (TCP and UDP). Not 7946, which
// Docker Swarm uses.
const DefaultPort = 7496

// AppDelegate is implemented by the agent (the IPAM glue). memberlist calls
// it from its network goroutines: every method must return quickly and must
// not block, touch the disk, or call Cluster methods that wait on the
// network (Join, Leave, UpdateMeta); copy the message into a bounded queue
// and hand it to a worker goroutine instead (the agent does). Methods may be
// called concurrently with each other.
type AppDelegate interface {
	// HandleBroadcast is called once per distinct broadcast from another
	// member. The payload is the caller's to keep.
	// origin is authenticated: the message carries its signature.
	HandleBroadcast(origin string, payload []byte)
	// HandleDirect is called for each SendTo message addressed to us, from
	// its authenticated (signing) sender.
	HandleDirect(from string, payload []byte)
	// LocalState returns the state sent in a push-pull exchange.
	LocalState(join bool) []byte
	// MergeRemoteState merges the LocalState of peer from, whose signature
	// the cluster verified (from is never empty).
	MergeRemoteState(from string, buf []byte, join bool)
	// CheckMerge may refuse a whole-cluster merge at join time (the IPAM
	// seed rule). remote is the other side's members, self excluded.
	CheckMerge(remote []Peer) error
}

// Config configures New.
type Config struct {
	Name string // unique node name, at most MaxNameLen bytes
	// Bind is the gossip listen address; port 0 lets the kernel choose (tests).
	Bind netip.AddrPort
	// Advertise is the address other members use; zero means Bind, port 0
	// means Bind's port. With an unspecified Bind IP (0.0.0.0, ::) an
	// Advertise address is required: the underlay is never guessed.
	Advertise netip.AddrPort
	Meta      Meta     // initial metadata (Leaving is cleared)
	Keys      [][]byte // gossip keys, 16/24/32 bytes, first = primary
	Insecure  bool     // run without gossip encryption (only when Keys is empty)
	StateDir  string   // keyring and peers.json live here; "" = no persistence
	Logger    hclog.Logger
	App       AppDelegate   // may be nil
	OnChange  func()        // called on its own goroutine after member/meta changes (coalesced)
	Timing    string        // TimingLAN (default) or TimingLocal
	ReapAfter time.Duration // failed/left members are forgotten after this; 0 = DefaultReapAfter
}

// Cluster is one agent's membership. All methods are safe for concurrent use.
type Cluster struct {
	cfg     Config
	log     hclog.Logger
	timing  timingProfile
	ml      *memberlist.Memberlist
	members *memberTable
	msgs    *messenger
	refuse  *refuser
	pins    *pinStore
	signKey PublicKey      // public half of our identity key (Meta.SignKey)
	addr    netip.AddrPort // advertised gossip address
	crypt   bool           // gossip is encrypted

	metaMu    sync.Mutex
	meta      Meta
	metaBytes []byte

	changeCh chan struct{}
	failKick chan struct{} // wakes the reconnector's look for failed members
	// suspectKick wakes the recheck of suspected members (suspect.go).
	suspectKick chan struct{}
	done        chan struct{}
	leaving     chan struct{} // closed by Leave and Shutdown
	wg          sync.WaitGroup

	stateMu sync.Mutex
	left    bool
	down    bool

	persistMu sync.Mutex
	lastSaved []savedPeer
}

// New validates cfg, starts memberlist listening and returns the Cluster.
// It joins nobody: call Join, JoinRetry or RejoinPersisted.
func New(cfg Config) (*Cluster, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	cfg.Meta = cfg.Meta.clone()
	cfg.Meta.Leaving = false
	c := &Cluster{cfg: cfg, log: cfg.Logger, meta: cfg.Meta,
		changeCh: make(chan struct{}, 1), failKick: make(chan struct{}, 1), suspectKick: make(chan struct{}, 1),
		done: make(chan struct{}), leaving: make(chan struct{})}
	mc, keys, err := c.prepare()
	if err != nil {
		return nil, err
	}
	c.wg.Add(1)
	go c.notifier()
	ml, err := memberlist.Create(mc)
	if err != nil {
		close(c.done)
		c.wg.Wait()
		return nil, fmt.Errorf("creating memberlist on %s: %w", cfg.Bind, err)
	}
	c.ml = ml
	ln := ml.LocalNode()
	c.addr = netip.AddrPortFrom(addrFromIP(ln.Addr), ln.Port)
	c.crypt = keys != nil
	if keys != nil && cfg.StateDir != "" {
		if err := saveKeyring(cfg.StateDir, keys); err != nil {
			c.log.Warn("could not persist the keyring", "error", err)
		}
	}
	c.log.Info("gossip started", "name", cfg.Name, "addr", c.addr, "encrypted", keys != nil,
		"timing", c.timingName())
	c.wg.Add(2)
	go c.reconnector()
	go c.suspectRecheck()
	return c, nil
}

func (c *Cluster) timingName() string {
	if c.cfg.Timing == "" {
		return TimingLAN
	}
	return c.cfg.Timing
}

// prepare validates the configuration and builds the memberlist config.
func (c *Cluster) prepare() (*memberlist.Config, [][]byte, error) {
	cfg := c.cfg
	if err := validateConfig(cfg); err != nil {
		return nil, nil, err
	}
	t, err := newTiming(cfg.Timing)
	if err != nil {
		return nil, nil, err
	}
	c.timing = t
	keys, fromDisk, err := resolveKeys(cfg.Keys, cfg.Insecure, cfg.StateDir)
	if err != nil {
		return nil, nil, err
	}
	id, err := c.loadIdentity()
	if err != nil {
		return nil, nil, err
	}
	if fromDisk {
		c.log.Info("using the keyring saved in the state dir", "keys", len(keys))
	}
	c.members = newMemberTable(cfg.Name, cfg.ReapAfter, nil)
	c.members.onSuspect = func() {
		select {
		case c.suspectKick <- struct{}{}:
		default:
		}
	}
	c.msgs = newMessenger(cfg.Name, messengerOpts{key: id, pins: c.pins, isMember: c.members.known, app: cfg.App,
		log: c.log.Named("broadcast"), numNodes: func() int { return max(c.members.numAlive(), appMinNodes) }, mult: t.ml.RetransmitMult})
	c.msgs.onLeaving = func(name string) {
		if c.members.noteLeaving(name) {
			c.log.Info("member gone", "peer", name, "state", StateLeft, "why", "its leave notice came after the failure")
			c.signal()
		}
	}
	c.msgs.onForget = c.forgetRemote
	c.refuse = newRefuser(cfg.Name, c.localMeta, c.members, c.log)
	c.refuse.pins = c.pins
	c.refuse.onPin = c.signal
	c.refuse.onNotify = c.notifyRefused
	c.msgs.onRefused = c.refuse.refusedBy
	mc := t.ml
	if err := c.fillMemberlistConfig(mc, keys); err != nil {
		return nil, nil, err
	}
	return mc, keys, nil
}

func validateConfig(cfg Config) error {
	switch {
	case cfg.Name == "":
		return errors.New("node name is empty")
	case len(cfg.Name) > MaxNameLen:
		return fmt.Errorf("node name %q is longer than %d bytes", cfg.Name, MaxNameLen)
	case !cfg.Bind.IsValid():
		return errors.New("bind address is not set")
	case cfg.Bind.Addr().IsUnspecified() && !cfg.Advertise.IsValid():
		return fmt.Errorf("bind address %s is unspecified: pass --advertise with this host's underlay address (flatmesh does not guess it)", cfg.Bind.Addr())
	case cfg.Advertise.IsValid() && cfg.Advertise.Addr().IsUnspecified():
		return fmt.Errorf("advertise address %s is unspecified: give this host's underlay address", cfg.Advertise.Addr())
	}
	return nil
}

func (c *Cluster) fillMemberlistConfig(mc *memberlist.Config, keys [][]byte) error {
	cfg := c.cfg
	adv := cfg.Advertise
	if !adv.IsValid() {
		adv = cfg.Bind
	}
	if adv.Port() == 0 {
		adv = netip.AddrPortFrom(adv.Addr(), cfg.Bind.Port())
	}
	mc.Name = cfg.Name
	mc.BindAddr = cfg.Bind.Addr().String()
	mc.BindPort = int(cfg.Bind.Port())
	mc.AdvertiseAddr = adv.Addr().String()
	mc.AdvertisePort = int(adv.Port())
	if keys != nil {
		kr, err := newKeyring(keys)
		if err != nil {
			return err
		}
		mc.Keyring = kr
	}
	d := &delegate{c: c}
	mc.Delegate, mc.Events = d, d
	mc.Merge = &mergeDelegate{r: c.refuse, app: cfg.App}
	mc.Alive = &aliveDelegate{r: c.refuse}
	mc.Ping = &pingDelegate{t: c.members}
	mc.Logger = memberlistLogger(c.log.Named("memberlist"), c.members.noteLogLine)
	mc.LogOutput = nil
	return nil
}

// localMeta returns the current metadata.
func (c *Cluster) localMeta() Meta {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	return c.meta.clone()
}

// signal wakes the notifier without blocking.
func (c *Cluster) signal() {
	select {
	case c.changeCh <- struct{}{}:
	default:
	}
	select {
	case c.failKick <- struct{}{}:
	default:
	}
}

// notifier calls OnChange after changes (coalesced: one call may cover many
// events) and saves peers.json at most once per timing.persistEvery.
func (c *Cluster) notifier() {
	defer c.wg.Done()
	var persistC <-chan time.Time
	for {
		select {
		case <-c.done:
			return
		case <-c.changeCh:
			if c.cfg.OnChange != nil {
				c.cfg.OnChange()
			}
			if persistC == nil {
				persistC = time.After(c.timing.persistEvery)
			}
		case <-persistC:
			persistC = nil
			c.persistPeers()
			c.persistPins()
		}
	}
}

// persistPeers saves peers.json when the set of members worth rejoining
// changed. Before any other member was seen in this run it writes nothing,
// so a starting agent does not erase the list RejoinPersisted needs.
func (c *Cluster) persistPeers() {
	if c.cfg.StateDir == "" || !c.members.sawOthers() {
		return
	}
	snap := snapshotPeers(c.cfg.Name, c.members.list())
	c.persistMu.Lock()
	defer c.persistMu.Unlock()
	if c.lastSaved != nil && equalSaved(snap, c.lastSaved) {
		return
	}
	if err := savePeers(c.cfg.StateDir, snap, time.Now()); err != nil {
		c.log.Warn("could not save the member list", "error", err)
		return
	}
	if snap == nil {
		snap = []savedPeer{}
	}
	c.lastSaved = snap
}

func equalSaved(a, b []savedPeer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// gone reports whether this agent has left the cluster or shut down.
func (c *Cluster) gone() bool {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.left || c.down
}

// Self returns this node as others see it (State "left" after Leave).
func (c *Cluster) Self() Peer {
	st := StateAlive
	c.stateMu.Lock()
	if c.left {
		st = StateLeft
	}
	c.stateMu.Unlock()
	return Peer{Name: c.cfg.Name, Addr: c.addr.Addr(), Port: c.addr.Port(), State: st, Meta: c.localMeta()}
}

// Encrypted reports whether gossip is encrypted (keys from Config.Keys or
// from the keyring persisted in the state dir).
func (c *Cluster) Encrypted() bool { return c.crypt }

// Members returns every known member, self included, with failed and left
// ones until they are reaped; sorted by name.
func (c *Cluster) Members() []Peer {
	list := c.members.list()
	self := c.Self()
	for i := range list {
		if list[i].Name == self.Name {
			list[i] = self
			return list
		}
	}
	// Not reached in practice: memberlist reports self when it starts.
	list = append(list, self)
	slices.SortFunc(list, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return list
}

// AlivePeers returns the live members, self included, sorted by name.
func (c *Cluster) AlivePeers() []Peer {
	var out []Peer
	for _, p := range c.Members() {
		if p.State.Live() {
			out = append(out, p)
		}
	}
	return out
}

// Broadcast sends payload to every member; each receives it once (via
// AppDelegate.HandleBroadcast) and relays it once. It never blocks. A payload
// over MaxBroadcastSize is dropped with an error log.
func (c *Cluster) Broadcast(payload []byte) {
	if err := c.msgs.broadcast(payload); err != nil {
		c.log.Error("dropping broadcast", "error", err)
	}
}

// SendTo sends payload to the live member name over TCP (memberlist's
// reliable channel); it blocks until the message is written or fails.
func (c *Cluster) SendTo(name string, payload []byte) error {
	if name == c.cfg.Name {
		return errors.New("sending to self: deliver locally instead")
	}
	for _, n := range c.ml.Members() {
		if n.Name == name {
			if err := c.ml.SendReliable(n, c.msgs.direct(name, payload)); err != nil {
				return fmt.Errorf("sending to %q: %w", name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("sending to %q: no live member of that name", name)
}

// UpdateMeta changes our metadata with fn (under a lock) and gossips it.
// An error means the new metadata is invalid and nothing changed. It waits
// (up to a few seconds, less once Leave or Shutdown started) for the update
// to be gossiped; if that times out the update still spreads by gossip and
// push-pull, and only a debug line is logged. Do not call it from an
// AppDelegate callback.
func (c *Cluster) UpdateMeta(fn func(*Meta)) error {
	c.metaMu.Lock()
	next := c.meta.clone()
	fn(&next)
	next.SignKey = c.signKey // our identity, whatever fn did
	enc, err := next.Encode()
	if err != nil {
		c.metaMu.Unlock()
		return fmt.Errorf("updating node metadata: %w", err)
	}
	c.meta, c.metaBytes = next, enc
	c.metaMu.Unlock()
	done := make(chan error, 1)
	go func() { done <- c.ml.UpdateNode(c.timing.metaTimeout) }()
	select {
	case err := <-done:
		if err != nil {
			c.log.Debug("metadata update not yet fully gossiped", "error", err)
		}
	case <-c.leaving:
		// Leaving: the update is queued; waiting would only delay the exit.
	}
	return nil
}

// Shutdown stops gossip without a leave announcement (peers will mark this
// node failed), after saving peers.json. It is idempotent.
func (c *Cluster) Shutdown() error {
	c.stateMu.Lock()
	if c.down {
		c.stateMu.Unlock()
		return nil
	}
	if !c.left {
		close(c.leaving)
	}
	c.down = true
	c.stateMu.Unlock()
	c.persistPeers()
	c.persistPins()
	err := c.ml.Shutdown()
	close(c.done)
	c.wg.Wait()
	if err != nil {
		return fmt.Errorf("shutting down memberlist: %w", err)
	}
	return nil
}

// memberlistLogger routes memberlist's "[LEVEL] memberlist: text" lines into
// hclog at the level they name, without the redundant "memberlist: ".
// Every line also goes to onLine (nil: none), which watches for suspicion.
func memberlistLogger(l hclog.Logger, onLine func([]byte)) *log.Logger {
	w := l.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	return log.New(stripWriter{w, onLine}, "", 0)
}

type stripWriter struct {
	w      io.Writer
	onLine func([]byte)
}

func (s stripWriter) Write(p []byte) (int, error) {
	if s.onLine != nil {
		s.onLine(p)
	}
	if _, err := s.w.Write(bytes.Replace(p, []byte("] memberlist: "), []byte("] "), 1)); err != nil {
		return 0, err
	}
	return len(p), nil
}
