package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	mdns "github.com/miekg/dns"
	"golang.org/x/net/netutil"
)

// Listener limits.
const (
	// maxTCPConns bounds concurrent TCP connections per address.
	maxTCPConns = 128
	// maxTCPQueries is how many queries one TCP connection may carry.
	maxTCPQueries = 64
	// maxUDPQuery is the read buffer per UDP query: a larger datagram
	// does not unpack and is dropped (real queries are a few hundred bytes).
	maxUDPQuery = 4096
	tcpIdle     = 5 * time.Second
	ioTimeout   = 2 * time.Second
	// udpReadWait is the UDP listener's read deadline. It bounds nothing
	// (no query waits on it; Shutdown unblocks the read by itself): a
	// shorter one only woke the idle agent to renew it (2 s: 0.5 wakeups/s
	// per address).
	udpReadWait = time.Hour
)

// ServerOptions configure NewServer.
type ServerOptions struct {
	Handler mdns.Handler
	Port    uint16 // 53 in production; 0 picks one (the UDP port, then TCP on it)
	Logger  hclog.Logger
}

// Server runs UDP and TCP listeners on a changing set of addresses (the
// container gateways on the agent's bridge). SetAddrs and Close are safe
// for concurrent use.
type Server struct {
	o   ServerOptions
	log hclog.Logger

	mu     sync.Mutex
	lis    map[netip.Addr]*listener
	closed bool
}

type listener struct {
	addr     netip.AddrPort
	udp, tcp *mdns.Server
}

// NewServer returns a server listening nowhere yet.
func NewServer(o ServerOptions) *Server {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return &Server{o: o, log: o.Logger, lis: map[netip.Addr]*listener{}}
}

// SetAddrs makes the server listen on exactly addrs: it starts the missing
// listeners (IP_FREEBIND, so an address that is being added to the bridge
// is fine) and stops those no longer wanted. Errors name each address that
// could not be served; the others are served anyway.
func (s *Server) SetAddrs(addrs []netip.Addr) error {
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		want[a.Unmap()] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("the DNS server is closed")
	}
	for a, l := range s.lis {
		if !want[a] {
			l.stop()
			delete(s.lis, a)
			s.log.Info("stopped listening", "addr", l.addr)
		}
	}
	var errs []error
	for a := range want {
		if _, ok := s.lis[a]; ok {
			continue
		}
		l, err := s.listen(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.lis[a] = l
		s.log.Info("listening", "addr", l.addr)
	}
	return errors.Join(errs...)
}

// Addrs returns the addresses (with port) being served, sorted.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.AddrPort, 0, len(s.lis))
	for _, l := range s.lis {
		out = append(out, l.addr)
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return out
}

// Close stops every listener.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, l := range s.lis {
		l.stop()
		delete(s.lis, a)
	}
	s.closed = true
}

func (s *Server) listen(a netip.Addr) (*listener, error) {
	lc := net.ListenConfig{Control: freebind}
	ctx := context.Background()
	pc, err := lc.ListenPacket(ctx, "udp", netip.AddrPortFrom(a, s.o.Port).String())
	if err != nil {
		return nil, fmt.Errorf("listening on udp %s: %w", net.JoinHostPort(a.String(), strconv.Itoa(int(s.o.Port))), err)
	}
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	ap := netip.AddrPortFrom(a, port)
	tl, err := lc.Listen(ctx, "tcp", ap.String())
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("listening on tcp %s: %w", ap, err)
	}
	l := &listener{
		addr: ap,
		udp:  &mdns.Server{PacketConn: pc, Handler: s.o.Handler, UDPSize: maxUDPQuery, ReadTimeout: udpReadWait, WriteTimeout: ioTimeout},
		tcp: &mdns.Server{Listener: netutil.LimitListener(tl, maxTCPConns), Handler: s.o.Handler,
			ReadTimeout: ioTimeout, WriteTimeout: ioTimeout, MaxTCPQueries: maxTCPQueries,
			IdleTimeout: func() time.Duration { return tcpIdle }},
	}
	for _, srv := range []*mdns.Server{l.udp, l.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func(srv *mdns.Server) {
			if err := srv.ActivateAndServe(); err != nil {
				s.log.Debug("listener ended", "addr", ap, "error", err)
			}
		}(srv)
		<-started
	}
	return l, nil
}

func (l *listener) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.udp.ShutdownContext(ctx)
	_ = l.tcp.ShutdownContext(ctx)
}
