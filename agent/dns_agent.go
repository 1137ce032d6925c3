package agent

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	fmdns "github.com/flatmesh/flatmesh/agent/dns"
	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/ipam"
)

// namesRefresh is how often a host re-broadcasts its record even when it
// did not change, so a host that missed it (a restart nobody noticed)
// catches up without waiting for a push-pull with us.
const namesRefresh = 30 * time.Second

// dnsService is the agent's cluster DNS: the name book fed by gossip, the
// handler and its listeners. nil in Agent.dns when DNS is off.
type dnsService struct {
	book    *nameBook
	handler *fmdns.Handler
	fwd     *fmdns.Forwarder
	server  *fmdns.Server

	rebuildMu sync.Mutex // orders table rebuilds: a slow one never overwrites a newer table

	mu         sync.Mutex
	aliases    map[aliasKey][]string // extra names per allocation (Docker aliases)
	greeted    map[string]bool       // alive members that were sent our record
	lastSent   time.Time
	listenErr  string
	listenAddr []netip.Addr
}

type aliasKey struct{ id, ifname string }

// startDNS prepares the service; listeners come with the first pass.
func (a *Agent) startDNS() {
	if !a.cfg.DNS {
		return
	}
	log := a.log.Named("dns")
	s := &dnsService{aliases: map[aliasKey][]string{}, greeted: map[string]bool{}}
	s.book = newNameBook(a.cfg.Name, a.cfg.DNSDomain, []netip.Prefix{a.cfg.IPAMPrefix()}, nil)
	s.book.isMember = a.isKnownMember
	space := a.cfg.IPAMPrefix()
	// Never forward to ourselves or into the cluster's space (another
	// agent's gateway would forward back: a loop).
	skip := func(ad netip.Addr) bool { return space.Contains(ad) || s.isListenAddr(ad) }
	s.fwd = fmdns.NewForwarder(fmdns.ForwarderOptions{ResolvConf: a.cfg.DNSResolvConf, Skip: skip, Logger: log})
	s.handler = fmdns.NewHandler(fmdns.HandlerOptions{Forwarder: s.fwd, Logger: log})
	s.handler.SetTable(fmdns.NewTable(a.cfg.DNSDomain, []netip.Prefix{a.cfg.IPAMPrefix()}, nil))
	s.server = fmdns.NewServer(fmdns.ServerOptions{Handler: s.handler, Port: 53, Logger: log})
	a.dns = s
}

func (a *Agent) stopDNS() {
	if a.dns != nil {
		a.dns.server.Close()
	}
}

func (s *dnsService) isListenAddr(ad netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.listenAddr, ad)
}

// isKnownMember asks the cluster's member table (any state: a dead
// host's names stay until rmpeer).
func (a *Agent) isKnownMember(name string) bool {
	cl := a.clRef.Load()
	if cl == nil {
		return false
	}
	for _, p := range cl.Members() {
		if p.Name == name {
			return true
		}
	}
	return false
}

// rebuildNames makes a new record table from the book.
func (a *Agent) rebuildNames() {
	a.dns.rebuildMu.Lock()
	defer a.dns.rebuildMu.Unlock()
	a.dns.handler.SetTable(fmdns.NewTable(a.cfg.DNSDomain, []netip.Prefix{a.cfg.IPAMPrefix()}, a.dns.book.records()))
}

// dnsPass runs at the end of every reconcile pass: publish our names,
// follow members and block owners, greet new members, and listen on the
// current gateway addresses.
func (a *Agent) dnsPass(v view) {
	if a.dns == nil {
		return
	}
	s := a.dns
	if payload, changed := s.book.setOwn(a.ownNames()); changed {
		a.publishNames(payload)
	}
	var members []string
	for _, p := range a.cl.Members() {
		members = append(members, p.Name)
	}
	s.book.setView(members, v.Blocks)
	a.rebuildNames()
	a.greetMembers(v)
	addrs, err := bridgeAddrs(a.cfg.Bridge, a.dnsScope())
	s.mu.Lock()
	if err == nil {
		s.listenAddr = addrs
	} else {
		addrs = s.listenAddr // keep serving what we served; the next pass retries
	}
	s.mu.Unlock()
	if err == nil {
		err = s.server.SetAddrs(addrs)
	}
	s.mu.Lock()
	report := err != nil && err.Error() != s.listenErr
	if err == nil {
		s.listenErr = ""
	} else {
		s.listenErr = err.Error()
	}
	s.mu.Unlock()
	if report {
		a.log.Warn("cluster DNS cannot listen on every gateway", "error", err)
	}
	allowed := []netip.Prefix{a.cfg.IPAMPrefix()}
	for _, ad := range addrs {
		allowed = append(allowed, netip.PrefixFrom(ad, ad.BitLen()))
	}
	s.handler.SetAllowed(allowed)
}

// dnsScope is the part of the bridge's addresses DNS listens on: the
// overlay's gateways, or in flat mode the host's own LAN address (the one
// whose subnet holds the flat range).
func (a *Agent) dnsScope() func(netip.Prefix) bool {
	if !a.plane.Capabilities().GatewayPerBlock { // flat: containers use the LAN's router
		return func(p netip.Prefix) bool { return p.Masked().Contains(a.cfg.FlatRange.Addr()) }
	}
	return func(p netip.Prefix) bool { return a.cfg.CIDR.Contains(p.Addr()) }
}

// ownNames lists this host's named allocations and their aliases.
func (a *Agent) ownNames() []fmdns.Record {
	s := a.dns
	als := a.ipam.Allocations()
	live := map[aliasKey]bool{}
	var out []fmdns.Record
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, al := range als {
		if strings.HasPrefix(al.ID, foreignPrefix) {
			continue
		}
		k := aliasKey{al.ID, al.IfName}
		live[k] = true
		addr := al.Prefix.Addr()
		if n := normalName(al.Name, a.cfg.DNSDomain); n != "" {
			out = append(out, fmdns.Record{Name: n, Addr: addr})
		}
		for _, n := range s.aliases[k] {
			out = append(out, fmdns.Record{Name: n, Addr: addr})
		}
	}
	for k := range s.aliases {
		if !live[k] {
			delete(s.aliases, k)
		}
	}
	sortRecords(out)
	out = slices.Compact(out)
	if len(out) > maxNamesPerHost {
		out = out[:maxNamesPerHost]
	}
	return out
}

// SetDNSAliases gives the allocation of (id, ifname) extra names (Docker
// network aliases, say) besides its own: each must be a valid DNS name in
// the cluster domain. They are published with the next pass and forgotten
// when the allocation is released. An empty list removes them.
func (a *Agent) SetDNSAliases(id, ifname string, aliases []string) error {
	if a.dns == nil {
		return nil
	}
	var names []string
	for _, n := range aliases {
		if err := fmdns.ValidName(n, a.cfg.DNSDomain); err != nil {
			return fmt.Errorf("alias: %w", err)
		}
		names = append(names, strings.ToLower(n))
	}
	if _, ok := a.ipam.Lookup(id, ifname); !ok && len(names) > 0 {
		return fmt.Errorf("no allocation for %s %s", id, ifname)
	}
	a.dns.mu.Lock()
	if len(names) == 0 {
		delete(a.dns.aliases, aliasKey{id, ifname})
	} else {
		a.dns.aliases[aliasKey{id, ifname}] = names
	}
	a.dns.mu.Unlock()
	a.poke()
	return nil
}

// publishNames sends our record to every member: by broadcast when it
// fits a gossip packet, else directly (TCP) to each live member.
func (a *Agent) publishNames(payload []byte) {
	cl := a.clRef.Load()
	if cl == nil {
		return
	}
	a.dns.mu.Lock()
	a.dns.lastSent = time.Now()
	a.dns.mu.Unlock()
	if len(payload) <= cluster.MaxBroadcastSize {
		cl.Broadcast(payload)
		return
	}
	go func() {
		for _, p := range cl.AlivePeers() {
			if p.Name != a.cfg.Name {
				if err := cl.SendTo(p.Name, payload); err != nil {
					a.log.Debug("sending our names", "peer", p.Name, "error", err)
				}
			}
		}
	}()
}

// greetMembers sends our record directly to members that came alive since
// the last pass (a joining host hears of the others' names at once; a host
// that restarted unnoticed is greeted when its record shows a new boot),
// and re-publishes it every namesRefresh.
func (a *Agent) greetMembers(v view) {
	s := a.dns
	alive := map[string]bool{}
	var fresh []string
	s.mu.Lock()
	for _, p := range v.Alive {
		alive[p.Name] = true
		if !s.greeted[p.Name] {
			fresh = append(fresh, p.Name)
		}
	}
	s.greeted = alive
	refresh := time.Since(s.lastSent) > namesRefresh
	s.mu.Unlock()
	if refresh {
		a.publishNames(s.book.ownRecord())
	}
	a.sendNamesTo(fresh)
}

// sendNamesTo sends our record directly to members, in the background (it
// is called from memberlist callbacks too).
func (a *Agent) sendNamesTo(members []string) {
	cl := a.clRef.Load()
	if cl == nil || len(members) == 0 {
		return
	}
	payload := a.dns.book.ownRecord()
	go func() {
		for _, name := range members {
			if err := cl.SendTo(name, payload); err != nil {
				a.log.Debug("sending our names to a member", "peer", name, "error", err)
			}
		}
	}()
}

// handleNames takes a names message from the gossip channel; it reports
// whether payload was one (whatever became of it). It never blocks.
func (a *Agent) handleNames(sender string, payload []byte) bool {
	if !isNamesMessage(payload) {
		return false
	}
	if a.dns != nil {
		a.acceptNames(sender, payload)
	}
	return true
}

func (a *Agent) acceptNames(sender string, payload []byte) {
	res, err := a.dns.book.accept(sender, payload)
	if err != nil {
		a.log.Debug("ignoring a names record", "from", sender, "error", err)
		return
	}
	if res.changed {
		a.rebuildNames()
	}
	if res.restart != "" {
		a.sendNamesTo([]string{res.restart})
	}
}

// namesPushPull wraps the IPAM push-pull state with our record.
func (a *Agent) namesPushPull(ipamState []byte) []byte {
	if a.dns == nil {
		return ipamState
	}
	return joinPushPull(ipamState, a.dns.book.ownRecord())
}

// splitNamesPushPull takes our part of the push-pull state of peer from
// and returns the IPAM part.
func (a *Agent) splitNamesPushPull(from string, buf []byte) ([]byte, error) {
	ipamState, record, err := splitPushPull(buf)
	if err != nil {
		return nil, err
	}
	if len(record) > 0 && a.dns != nil {
		a.acceptNames(from, record)
	}
	return ipamState, nil
}

// dnsServers are the resolvers a container with this allocation should
// use: its gateway in the overlays (on our bridge, where we listen), the
// host's LAN address in flat mode.
func (a *Agent) dnsServers(al ipam.Allocation) []string {
	if a.dns == nil {
		return nil
	}
	if a.plane.Capabilities().GatewayPerBlock { // overlays: the block's gateway
		if gw := a.plane.Gateway(al); gw.IsValid() {
			return []string{gw.String()}
		}
		return nil
	}
	a.dns.mu.Lock()
	defer a.dns.mu.Unlock()
	var out []string
	for _, ad := range a.dns.listenAddr {
		out = append(out, ad.String())
	}
	return out
}

// dnsStatus is the "dns" part of status.
func (a *Agent) dnsStatus() *api.DNSStatus {
	if a.dns == nil {
		return nil
	}
	st := &api.DNSStatus{Domain: a.cfg.DNSDomain, Listen: []string{}, Upstreams: []string{}}
	for _, ap := range a.dns.server.Addrs() {
		st.Listen = append(st.Listen, ap.String())
	}
	for _, ap := range a.dns.fwd.Servers() {
		st.Upstreams = append(st.Upstreams, ap.String())
	}
	st.Hosts, st.Names = a.dns.book.stats()
	c := &a.dns.handler.Stats
	st.Answered, st.Forwarded, st.Refused = c.Answered.Load(), c.Forwarded.Load(), c.Refused.Load()
	st.Dropped, st.Failed = c.Dropped.Load(), c.Failed.Load()
	a.dns.mu.Lock()
	st.Error = a.dns.listenErr
	a.dns.mu.Unlock()
	return st
}
