package kernel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// WatchOptions says which kernel events should wake a reconcile loop.
type WatchOptions struct {
	Netns      string          // namespace path; "" = the agent's own
	Links      []string        // changes of these links, their addresses and routes through them
	NeighLinks []string        // neighbour and FDB changes on these links
	Wake       chan<- struct{} // poked without ever blocking; give it capacity 1
	Logger     hclog.Logger    // nil = silent
	RetryDelay time.Duration   // wait before resubscribing after a failure; default 1s
}

// Watch subscribes to link, address, route and neighbour events in the
// namespace and pokes Wake (non-blocking, so pokes coalesce) whenever an
// event touches one of the watched links or a route carries RouteProtocol:
// someone deleting our route by hand wakes the loop, which puts it back.
// It also pokes once after every (re)subscription, since events may have
// been missed. It blocks until ctx is done and then returns nil; it returns
// an error only when the first subscription fails. Run it in its own
// goroutine; one Watch per namespace and loop.
func Watch(ctx context.Context, opts WatchOptions) error {
	if opts.Wake == nil {
		return fmt.Errorf("watch: no wake channel")
	}
	opts = withWatchDefaults(opts)
	w := &watcher{opts: opts, idx: map[int]string{}}
	first := true
	for {
		err := w.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if first && err != nil && !errors.Is(err, errSubscriptionEnded) {
			return err
		}
		first = false
		opts.Logger.Warn("netlink watch interrupted; resubscribing", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(opts.RetryDelay):
		}
	}
}

func withWatchDefaults(opts WatchOptions) WatchOptions {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = time.Second
	}
	return opts
}

var errSubscriptionEnded = errors.New("netlink subscription ended")

type watcher struct {
	opts WatchOptions
	mu   sync.Mutex
	idx  map[int]string // index -> name of watched links
}

func (w *watcher) poke() {
	select {
	case w.opts.Wake <- struct{}{}:
	default:
	}
}

// session subscribes once and forwards events until ctx is done or a
// subscription ends.
func (w *watcher) session(ctx context.Context) error {
	nsh, err := openNetnsFD(w.opts.Netns)
	if err != nil {
		return err
	}
	defer nsh.Close()
	if err := w.loadIndexes(nsh); err != nil {
		return err
	}
	done := make(chan struct{})
	linkCh := make(chan netlink.LinkUpdate, 64)
	routeCh := make(chan netlink.RouteUpdate, 64)
	neighCh := make(chan netlink.NeighUpdate, 64)
	addrCh := make(chan netlink.AddrUpdate, 64)
	// netlink's subscription goroutines send to their channel without
	// watching done: one blocked on a full channel when the session ends
	// would stay forever, one per resubscribe. Closing done closes their
	// sockets; draining what they still send lets them see that and close
	// their channel, and the drainer ends when every channel is closed.
	var subscribed []func()
	defer func() {
		close(done)
		go func() {
			for _, drain := range subscribed {
				drain()
			}
		}()
	}()
	cb := func(err error) { w.opts.Logger.Debug("netlink watch", "error", err) }
	if err := netlink.LinkSubscribeWithOptions(linkCh, done, netlink.LinkSubscribeOptions{Namespace: &nsh, ErrorCallback: cb}); err != nil {
		return fmt.Errorf("subscribing to link events: %w", err)
	}
	subscribed = append(subscribed, func() { drainUntilClosed(linkCh) })
	if err := netlink.RouteSubscribeWithOptions(routeCh, done, netlink.RouteSubscribeOptions{Namespace: &nsh, ErrorCallback: cb}); err != nil {
		return fmt.Errorf("subscribing to route events: %w", err)
	}
	subscribed = append(subscribed, func() { drainUntilClosed(routeCh) })
	if err := netlink.NeighSubscribeWithOptions(neighCh, done, netlink.NeighSubscribeOptions{Namespace: &nsh, ErrorCallback: cb}); err != nil {
		return fmt.Errorf("subscribing to neighbour events: %w", err)
	}
	subscribed = append(subscribed, func() { drainUntilClosed(neighCh) })
	if err := netlink.AddrSubscribeWithOptions(addrCh, done, netlink.AddrSubscribeOptions{Namespace: &nsh, ErrorCallback: cb}); err != nil {
		return fmt.Errorf("subscribing to address events: %w", err)
	}
	subscribed = append(subscribed, func() { drainUntilClosed(addrCh) })
	w.poke()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-linkCh:
			if !ok {
				return errSubscriptionEnded
			}
			w.onLink(u)
		case u, ok := <-routeCh:
			if !ok {
				return errSubscriptionEnded
			}
			if u.Route.Protocol == RouteProtocol || w.watched(u.Route.LinkIndex, w.opts.Links) {
				w.poke()
			}
		case u, ok := <-neighCh:
			if !ok {
				return errSubscriptionEnded
			}
			if w.watched(u.Neigh.LinkIndex, w.opts.NeighLinks) {
				w.poke()
			}
		case u, ok := <-addrCh:
			if !ok {
				return errSubscriptionEnded
			}
			if w.watched(u.LinkIndex, w.opts.Links) {
				w.poke()
			}
		}
	}
}

// drainUntilClosed discards what a finished subscription still sends.
func drainUntilClosed[T any](ch <-chan T) {
	for range ch {
	}
}

func (w *watcher) loadIndexes(nsh netns.NsHandle) error {
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("opening netlink handle: %w", err)
	}
	defer h.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.idx)
	for _, name := range append(slices.Clone(w.opts.Links), w.opts.NeighLinks...) {
		l, err := h.LinkByName(name)
		if err == nil {
			w.idx[l.Attrs().Index] = name
		}
	}
	return nil
}

func (w *watcher) onLink(u netlink.LinkUpdate) {
	a := u.Attrs()
	w.mu.Lock()
	_, known := w.idx[a.Index]
	mine := slices.Contains(w.opts.Links, a.Name) || slices.Contains(w.opts.NeighLinks, a.Name)
	switch {
	case u.Header.Type == unix.RTM_DELLINK || !mine:
		delete(w.idx, a.Index) // deleted, or renamed away from a watched name
	default:
		w.idx[a.Index] = a.Name
	}
	w.mu.Unlock()
	if known || mine {
		w.poke()
	}
}

func (w *watcher) watched(index int, names []string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	name, ok := w.idx[index]
	return ok && slices.Contains(names, name)
}
