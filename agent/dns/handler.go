package dns

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	mdns "github.com/miekg/dns"
)

// Defaults of HandlerOptions.
const (
	// DefaultRate is the per-source query rate (queries per second) with
	// a burst of DefaultBurst: far above what a container's resolver asks,
	// low enough that one container cannot starve the agent.
	DefaultRate  = 2000
	DefaultBurst = 4000
	// DefaultMaxForwards bounds the forwarded queries in flight; beyond it
	// a query gets SERVFAIL at once instead of a goroutine waiting.
	DefaultMaxForwards = 512
	// ourUDPSize is the EDNS0 buffer size we advertise (the DNS flag day
	// value that avoids fragmentation).
	ourUDPSize = 1232
)

// HandlerOptions configure NewHandler.
type HandlerOptions struct {
	// Forwarder answers names that are not the cluster's; nil refuses them.
	Forwarder *Forwarder
	// Rate and Burst limit queries per source address; 0 takes the
	// defaults, a negative Rate turns the limit off (benchmarks).
	Rate  float64
	Burst int
	// MaxForwards bounds concurrent forwarded queries (0: the default).
	MaxForwards int
	Logger      hclog.Logger
}

// Handler answers DNS queries: cluster names from the current Table,
// other names through the Forwarder, and only for sources it allows (the
// cluster's address space and the agent's own addresses); everyone else
// gets REFUSED, so the agent is never an open resolver. It never panics on
// input (fuzzed), and drops queries over the per-source rate. Safe for
// concurrent use; SetTable and SetAllowed may be called at any time.
type Handler struct {
	fwd     *Forwarder
	lim     *limiter
	fwdSem  chan struct{}
	log     hclog.Logger
	table   atomic.Pointer[Table]
	allowed atomic.Pointer[[]netip.Prefix]

	Stats Stats
}

// Stats count what the handler did (read with atomic loads).
type Stats struct {
	Answered, Forwarded, Refused, Dropped, Failed atomic.Uint64
}

var _ mdns.Handler = (*Handler)(nil)

// NewHandler returns a handler with an empty table that allows nobody.
func NewHandler(o HandlerOptions) *Handler {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Rate == 0 {
		o.Rate, o.Burst = DefaultRate, DefaultBurst
	}
	if o.MaxForwards <= 0 {
		o.MaxForwards = DefaultMaxForwards
	}
	h := &Handler{fwd: o.Forwarder, lim: newLimiter(o.Rate, o.Burst, nil), fwdSem: make(chan struct{}, o.MaxForwards), log: o.Logger}
	h.table.Store(NewTable("flatmesh", nil, nil))
	h.allowed.Store(&[]netip.Prefix{})
	return h
}

// SetTable replaces the record table.
func (h *Handler) SetTable(t *Table) { h.table.Store(t) }

// Table returns the current record table.
func (h *Handler) Table() *Table { return h.table.Load() }

// SetAllowed replaces the source prefixes that are answered.
func (h *Handler) SetAllowed(p []netip.Prefix) {
	c := append([]netip.Prefix(nil), p...)
	h.allowed.Store(&c)
}

func (h *Handler) isAllowed(a netip.Addr) bool {
	for _, p := range *h.allowed.Load() {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ServeDNS answers one query.
func (h *Handler) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	src := sourceAddr(w.RemoteAddr())
	if !h.lim.allow(src) || r.Response {
		h.Stats.Dropped.Add(1)
		return
	}
	m := new(mdns.Msg)
	allowed := h.isAllowed(src)
	switch {
	case r.Opcode != mdns.OpcodeQuery:
		m.SetRcode(r, mdns.RcodeNotImplemented)
	case len(r.Question) != 1:
		m.SetRcodeFormatError(r)
	case !allowed:
		m.SetRcode(r, mdns.RcodeRefused)
		h.Stats.Refused.Add(1)
	default:
		res := h.table.Load().Lookup(r.Question[0])
		if !res.Ours {
			h.forward(w, r)
			return
		}
		m.SetRcode(r, res.Rcode)
		m.Authoritative = true
		m.Answer, m.Ns = res.Answer, res.Ns
		h.Stats.Answered.Add(1)
	}
	m.RecursionAvailable = allowed
	h.write(w, r, m)
}

// forward passes a query to the upstream resolvers.
func (h *Handler) forward(w mdns.ResponseWriter, r *mdns.Msg) {
	if h.fwd == nil {
		h.Stats.Refused.Add(1)
		h.write(w, r, new(mdns.Msg).SetRcode(r, mdns.RcodeRefused))
		return
	}
	select {
	case h.fwdSem <- struct{}{}:
	default:
		h.Stats.Failed.Add(1)
		h.write(w, r, new(mdns.Msg).SetRcode(r, mdns.RcodeServerFailure))
		return
	}
	defer func() { <-h.fwdSem }()
	resp, err := h.fwd.Exchange(context.Background(), r)
	if err != nil {
		h.log.Debug("forwarding failed", "name", r.Question[0].Name, "error", err)
		h.Stats.Failed.Add(1)
		m := new(mdns.Msg).SetRcode(r, mdns.RcodeServerFailure)
		m.RecursionAvailable = true
		h.write(w, r, m)
		return
	}
	h.Stats.Forwarded.Add(1)
	h.write(w, r, resp)
}

// write sends m, truncated to what the client can take over UDP, with our
// EDNS0 record when the query had one.
func (h *Handler) write(w mdns.ResponseWriter, r, m *mdns.Msg) {
	size := mdns.MinMsgSize
	opt := r.IsEdns0()
	if opt != nil {
		size = max(int(opt.UDPSize()), mdns.MinMsgSize)
		if ro := m.IsEdns0(); ro == nil {
			m.SetEdns0(ourUDPSize, false)
		}
	} else if ro := m.IsEdns0(); ro != nil {
		// The upstream added one the client did not ask for: drop it.
		var extra []mdns.RR
		for _, rr := range m.Extra {
			if rr.Header().Rrtype != mdns.TypeOPT {
				extra = append(extra, rr)
			}
		}
		m.Extra = extra
	}
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
		size = mdns.MaxMsgSize
	}
	m.Truncate(size)
	if err := w.WriteMsg(m); err != nil {
		h.log.Trace("writing an answer", "error", err)
	}
}

func sourceAddr(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
