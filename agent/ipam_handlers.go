package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/ipam"
)

// openIPAM loads the allocator. A host started with no join address and no
// saved members is the first host: it seeds the space.
func (a *Agent) openIPAM() (*ipam.Allocator, error) {
	_, err := os.Stat(filepath.Join(a.cfg.StateDir, "peers.json"))
	seed := len(a.cfg.Join) == 0 && errors.Is(err, os.ErrNotExist)
	al, err := ipam.Open(ipam.Options{
		Self: a.cfg.Name,
		Config: ipam.Config{
			CIDR:            a.cfg.IPAMPrefix(),
			BlockBits:       a.cfg.BlockBits,
			Exclude:         a.cfg.FlatExclude,
			GatewayPerBlock: a.plane.Capabilities().GatewayPerBlock,
		},
		StateDir:  a.cfg.StateDir,
		Seed:      seed,
		Transport: &transport{a: a},
		Logger:    a.log.Named("ipam"),
		OnChange:  a.afterIPAMChange,
		IsMember:  a.isMember,
	})
	if err != nil {
		return nil, fmt.Errorf("opening IPAM state: %w", err)
	}
	return al, nil
}

func (a *Agent) aliveNames() []string {
	var names []string
	for _, p := range a.cl.AlivePeers() {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return names
}

func (a *Agent) handleIPAM(r *http.Request) (any, error) {
	alive := map[string]bool{}
	for _, n := range a.aliveNames() {
		alive[n] = true
	}
	out := api.IPAM{
		CIDR:   a.cfg.IPAMPrefix().String(),
		Seed:   fmt.Sprintf("%016x", a.ipam.SeedID()),
		Digest: a.ipam.Digest(),
		Blocks: []api.Block{},
	}
	for _, b := range a.ipam.Blocks() {
		out.Blocks = append(out.Blocks, api.Block{
			Prefix:    b.Prefix.String(),
			Owner:     b.Owner,
			Version:   b.Version,
			Used:      b.Used,
			Free:      b.Free,
			Reachable: b.Owner != "" && alive[b.Owner],
		})
	}
	return out, nil
}

// handleIPAMCheck runs the local checks and compares this host's map digest
// with every live peer's (they gossip it in their metadata).
func (a *Agent) handleIPAMCheck(r *http.Request) (any, error) {
	problems := a.ipam.Check()
	mine := a.ipam.DigestValue()
	out := api.IPAMCheck{Digest: fmt.Sprintf("%016x", mine), Peers: []string{}}
	for _, p := range a.cl.AlivePeers() {
		if p.Name == a.cfg.Name || p.Meta.IPAMDigest == 0 {
			continue // self, or a peer still starting: nothing to compare
		}
		if p.Meta.IPAMDigest != mine {
			problems = append(problems, fmt.Sprintf("peer %s sees block ownership digest %016x, this host %016x (views differ; they converge within a gossip round unless partitioned)", p.Name, p.Meta.IPAMDigest, mine))
			continue
		}
		out.Peers = append(out.Peers, p.Name)
	}
	out.Problems = problems
	if out.Problems == nil {
		out.Problems = []string{}
	}
	out.OK = len(problems) == 0
	return out, nil
}

func (a *Agent) handleRmpeer(r *http.Request) (any, error) {
	var req api.RemovePeerRequest
	if err := api.Decode(r, &req); err != nil {
		return nil, err
	}
	if req.Name == a.cfg.Name {
		return nil, api.BadRequest(errors.New("refusing to remove this host itself; run rmpeer on another host after this one is gone"))
	}
	for _, p := range a.cl.Members() {
		if p.Name == req.Name && p.State.Live() {
			return nil, &api.StatusError{Code: http.StatusConflict,
				Err: fmt.Errorf("refusing to remove %s: it is %s; stop its agent (or wait until it is marked failed) first", req.Name, p.State)}
		}
	}
	// A host gone for good: its pinned signing key goes too, on every
	// member, so a reinstalled host can come back under the name.
	_, pinned := a.cl.PinnedKey(req.Name)
	if err := a.cl.ForgetPin(req.Name); err != nil {
		return nil, &api.StatusError{Code: http.StatusConflict, Err: err}
	}
	before := len(a.ipam.OwnedBlocks(req.Name))
	if err := a.ipam.RemovePeer(req.Name, a.aliveNames()); err != nil && !(pinned && errors.Is(err, ipam.ErrUnknownPeer)) {
		return nil, &api.StatusError{Code: http.StatusConflict, Err: err}
	}
	a.afterIPAMChange()
	return api.RemovePeerResponse{Name: req.Name, Reclaimed: before}, nil
}

// allocate asks the allocator for an address, waiting at most a minute for
// a block from a peer.
func (a *Agent) allocate(ctx context.Context, req ipam.Request) (ipam.Allocation, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// A host that has just joined may not have run a reconcile pass yet:
	// tell the allocator who is alive so it knows whom to ask for a block.
	a.ipam.PeersChanged(a.aliveNames())
	al, err := a.ipam.Allocate(ctx, req)
	if err == nil {
		a.afterIPAMChange()
	}
	return al, err
}
