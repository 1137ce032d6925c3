package dns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	mdns "github.com/miekg/dns"
)

// Forwarding limits.
const (
	// UpstreamTimeout bounds one exchange with one upstream server.
	UpstreamTimeout = 2 * time.Second
	// ForwardTimeout bounds a whole forwarded query (all servers, UDP and TCP).
	ForwardTimeout = 4 * time.Second
	// maxUpstreams is how many nameserver lines are used (glibc uses 3).
	maxUpstreams = 3
	// resolvCheckEvery is how often the resolv.conf file's identity
	// (size, mtime, inode) is checked; a change re-reads it.
	resolvCheckEvery = time.Second
	// maxResolvConf bounds how much of resolv.conf is read.
	maxResolvConf = 64 << 10
)

// ParseResolvConf returns the nameserver addresses of a resolv.conf text,
// in order, at most three, leaving out loopback addresses (a local stub
// such as systemd-resolved's 127.0.0.53 is not reachable from containers,
// and forwarding to ourselves would loop) and those skip reports (our own
// listen addresses). Zone indexes are dropped.
func ParseResolvConf(data []byte, skip func(netip.Addr) bool) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		a = a.Unmap().WithZone("")
		if a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || (skip != nil && skip(a)) {
			continue
		}
		out = append(out, a)
		if len(out) == maxUpstreams {
			break
		}
	}
	return out
}

// ForwarderOptions configure NewForwarder.
type ForwarderOptions struct {
	// ResolvConf is the file the upstream servers are read from (port 53).
	ResolvConf string
	// Static, if set, is used instead of ResolvConf (tests, benchmarks).
	Static []netip.AddrPort
	// Skip leaves out addresses of ours (the listen addresses).
	Skip   func(netip.Addr) bool
	Logger hclog.Logger
}

// Forwarder sends queries that are not the cluster's to the host's
// upstream resolvers: UDP first, TCP when the answer is truncated, each
// server in turn until one answers. Safe for concurrent use.
type Forwarder struct {
	o   ForwarderOptions
	log hclog.Logger
	udp *mdns.Client
	tcp *mdns.Client

	mu        sync.Mutex
	servers   []netip.AddrPort
	stamp     fileStamp
	lastCheck time.Time
}

// NewForwarder reads the upstream servers once (a missing file is not an
// error: there is nothing to forward to until it appears).
func NewForwarder(o ForwarderOptions) *Forwarder {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	f := &Forwarder{
		o: o, log: o.Logger,
		udp: &mdns.Client{Net: "udp", Timeout: UpstreamTimeout, UDPSize: 4096},
		tcp: &mdns.Client{Net: "tcp", Timeout: UpstreamTimeout},
	}
	f.servers = append(f.servers, o.Static...)
	if len(o.Static) == 0 {
		f.refresh(time.Now())
	}
	return f
}

// Servers returns the upstream servers in use, re-reading resolv.conf when
// it changed.
func (f *Forwarder) Servers() []netip.AddrPort {
	f.refresh(time.Now())
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]netip.AddrPort(nil), f.servers...)
}

// fileStamp identifies a version of a file cheaply.
type fileStamp struct {
	ok    bool
	size  int64
	mtime time.Time
	ino   uint64
}

// refresh re-reads resolv.conf when its stamp changed, at most once every
// resolvCheckEvery.
func (f *Forwarder) refresh(now time.Time) {
	if len(f.o.Static) > 0 || f.o.ResolvConf == "" {
		return
	}
	f.mu.Lock()
	if now.Sub(f.lastCheck) < resolvCheckEvery && !f.lastCheck.IsZero() {
		f.mu.Unlock()
		return
	}
	f.lastCheck = now
	old := f.stamp
	f.mu.Unlock()
	st := statFile(f.o.ResolvConf)
	if st == old {
		return
	}
	var servers []netip.AddrPort
	if st.ok {
		data, err := readLimited(f.o.ResolvConf, maxResolvConf)
		if err != nil {
			f.log.Warn("reading the upstream resolvers", "file", f.o.ResolvConf, "error", err)
			return
		}
		for _, a := range ParseResolvConf(data, f.o.Skip) {
			servers = append(servers, netip.AddrPortFrom(a, 53))
		}
	}
	f.mu.Lock()
	f.stamp, f.servers = st, servers
	f.mu.Unlock()
	f.log.Info("upstream resolvers", "file", f.o.ResolvConf, "servers", fmt.Sprint(servers))
}

func readLimited(path string, n int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	buf := make([]byte, n)
	m, err := fh.Read(buf)
	if err != nil && m == 0 {
		return nil, err
	}
	return buf[:m], nil
}

var errNoUpstream = errors.New("no upstream resolver (no usable nameserver in resolv.conf)")

// Exchange forwards q (not modified) and returns the first answer. The
// answer's ID is the query's.
func (f *Forwarder) Exchange(ctx context.Context, q *mdns.Msg) (*mdns.Msg, error) {
	servers := f.Servers()
	if len(servers) == 0 {
		return nil, errNoUpstream
	}
	ctx, cancel := context.WithTimeout(ctx, ForwardTimeout)
	defer cancel()
	out := q.Copy()
	out.Id = mdns.Id()
	var errs []error
	for _, s := range servers {
		if ctx.Err() != nil {
			break
		}
		r, err := f.exchangeOne(ctx, out, s.String())
		if err == nil {
			r.Id = q.Id
			return r, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("forwarding %s: %w", q.Question[0].Name, errors.Join(errs...))
}

// exchangeOne asks one server over UDP, and over TCP when the UDP answer
// is truncated.
func (f *Forwarder) exchangeOne(ctx context.Context, q *mdns.Msg, server string) (*mdns.Msg, error) {
	r, _, err := f.udp.ExchangeContext(ctx, q, server)
	if err != nil {
		return nil, err
	}
	if !r.Truncated {
		return r, nil
	}
	r, _, err = f.tcp.ExchangeContext(ctx, q, server)
	return r, err
}
