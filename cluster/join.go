package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ErrGossipKey is wrapped by Join errors when the peer and this agent do not
// share a gossip key (or one of them runs --insecure).
var ErrGossipKey = errors.New("gossip key rejected")

// errBadAddress marks join addresses that do not parse.
var errBadAddress = errors.New("bad join address")

// normalizeJoinAddr turns "ip", "ip:port", "[v6]:port", "host" or
// "host:port" into host:port, adding DefaultPort when the port is missing.
func normalizeJoinAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: empty", errBadAddress)
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a, DefaultPort).String(), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(s, ":") {
			return "", fmt.Errorf("%w %q: %v", errBadAddress, s, err)
		}
		host, port = s, strconv.Itoa(DefaultPort)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", fmt.Errorf("%w %q: port %q is not 1-65535", errBadAddress, s, port)
	}
	if host == "" {
		return "", fmt.Errorf("%w %q: no host", errBadAddress, s)
	}
	return net.JoinHostPort(host, port), nil
}

// Join contacts each address ("ip[:port]", default port DefaultPort) and
// merges with its cluster. It returns how many addresses were joined; the
// error is non-nil only when none was, and then says, per address, what was
// refused and why (errors.As *RefusedError), or that the gossip key differs
// (errors.Is ErrGossipKey). Failures of some addresses when others succeed
// are logged. Safe to call concurrently; not after Leave or Shutdown.
func (c *Cluster) Join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("joining: no addresses given")
	}
	norm := make([]string, 0, len(addrs))
	for _, a := range addrs {
		n, err := normalizeJoinAddr(a)
		if err != nil {
			return 0, fmt.Errorf("joining: %w", err)
		}
		norm = append(norm, n)
	}
	if c.gone() {
		return 0, errors.New("joining: this agent has left the cluster; restart it to join again")
	}
	c.refuse.joining.Add(1)
	defer c.refuse.joining.Add(-1)
	start := time.Now()
	joined := 0
	var errs []error
	for _, a := range norm {
		n, err := c.ml.Join([]string{a})
		if err != nil {
			errs = append(errs, c.explainJoinError(a, err))
			continue
		}
		joined += n
	}
	if joined == 0 {
		return 0, errors.Join(errs...)
	}
	if e := c.awaitRefusal(start); e != nil {
		return 0, fmt.Errorf("joining: refused: %w", e)
	}
	for _, e := range errs {
		c.log.Warn("could not join one of the addresses", "error", e)
	}
	c.log.Info("joined the cluster", "via", joined, "members", c.members.numAlive())
	return joined, nil
}

// memberlistDetail extracts the reason from memberlist's Join error (a
// multierror of "failed to join ADDR: REASON").
func memberlistDetail(err error) string {
	var parts []string
	if w, ok := err.(interface{ WrappedErrors() []error }); ok {
		for _, e := range w.WrappedErrors() {
			parts = append(parts, e.Error())
		}
	} else {
		parts = []string{err.Error()}
	}
	for i, p := range parts {
		if strings.HasPrefix(p, "failed to join ") {
			if j := strings.Index(p, ": "); j >= 0 {
				parts[i] = p[j+2:]
			}
		}
	}
	return strings.Join(parts, "; ")
}

// explainJoinError turns memberlist's error for one address into one that
// says what happened.
func (c *Cluster) explainJoinError(addr string, err error) error {
	detail := memberlistDetail(err)
	if r := c.refuse.find(detail); r != nil {
		return fmt.Errorf("joining %s: refused: %w", addr, r)
	}
	if isKeyMismatch(detail) {
		return fmt.Errorf("joining %s: %w (is --key-file the same on every host, and --insecure on none or all?): %s",
			addr, ErrGossipKey, detail)
	}
	if strings.HasPrefix(detail, "remote error: ") {
		// The peer's own error, e.g. its refusal of our state; pass it on.
		return fmt.Errorf("joining %s: the peer answered: %s", addr, strings.TrimPrefix(detail, "remote error: "))
	}
	return fmt.Errorf("joining %s: %s", addr, detail)
}

// isKeyMismatch recognises memberlist's encryption errors. The peer answers
// an undecryptable request with an error encrypted under its own key, so the
// joiner sees one of these (or, rarely, a bare EOF if the peer gave up).
func isKeyMismatch(detail string) bool {
	for _, s := range []string{
		"no installed keys could decrypt",
		"encryption is configured but remote state is not encrypted",
		"remote state is encrypted and encryption is not configured",
	} {
		if strings.Contains(detail, s) {
			return true
		}
	}
	return false
}

// permanent reports whether a Join error is an answer that retrying will not
// change: every address refused us (other than transiently), had another
// key, or did not parse.
func permanent(err error) bool {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var r *RefusedError
		if errors.As(e, &r) {
			if r.Transient() {
				return false
			}
			continue
		}
		if !errors.Is(e, ErrGossipKey) && !errors.Is(e, errBadAddress) {
			return false
		}
	}
	return len(errs) > 0
}

// JoinRetry calls Join with backoff (doubling, with jitter, up to 30 s for
// TimingLAN) until one address answers. It stops early, returning the error,
// when every address gave a definitive answer (other cluster or settings,
// other gossip key, bad address); a duplicate underlay or name is retried,
// as the member holding it may be a dead host not yet declared failed. When
// ctx ends it returns ctx's error wrapped with the last failure.
func (c *Cluster) JoinRetry(ctx context.Context, addrs []string) error {
	wait := c.timing.retryMin
	for attempt := 1; ; attempt++ {
		_, err := c.Join(addrs)
		if err == nil {
			return nil
		}
		if permanent(err) {
			return err
		}
		c.log.Warn("join failed, will retry", "attempt", attempt, "in", wait, "error", err)
		jitter := time.Duration(rand.Int64N(int64(wait)/4 + 1))
		select {
		case <-ctx.Done():
			return fmt.Errorf("joining %s: %w (last error: %v)", strings.Join(addrs, ", "), ctx.Err(), err)
		case <-time.After(wait + jitter):
		}
		wait = min(2*wait, c.timing.retryMax)
	}
}

// RejoinPersisted joins the members saved in StateDir/peers.json by an
// earlier run, with JoinRetry's backoff. With no state dir or no saved
// members (the first start) it logs that and returns nil at once.
func (c *Cluster) RejoinPersisted(ctx context.Context) error {
	if c.cfg.StateDir == "" {
		return nil
	}
	saved, err := loadPeers(c.cfg.StateDir)
	if err != nil {
		return err
	}
	var addrs []string
	for _, p := range saved {
		ap := netip.AddrPortFrom(p.Addr, p.Port)
		if p.Name == c.cfg.Name || ap == c.addr {
			continue
		}
		addrs = append(addrs, ap.String())
	}
	if len(addrs) == 0 {
		c.log.Info("no saved members to rejoin; waiting to be joined")
		return nil
	}
	c.log.Info("rejoining saved members", "count", len(addrs))
	return c.JoinRetry(ctx, addrs)
}
