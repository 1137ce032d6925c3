package kernel

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ResolveNetns turns a namespace spec (a path such as /run/netns/x or
// /proc/PID/ns/net, a name under /run/netns, or a PID) into the path of a
// file that holds a network namespace, and checks that it really is one
// without ever blocking on what it finds there (see StatNetns).
func ResolveNetns(spec string) (string, error) {
	ns, err := StatNetns(spec)
	if err != nil {
		return "", err
	}
	return ns.Path, nil
}

// InNetns runs fn on an OS thread that has entered the network namespace at
// path ("" = the agent's own namespace) and leaves it afterwards. Sockets fn
// opens stay in that namespace; goroutines fn starts do not. If the thread
// cannot return to its original namespace it is discarded, never reused.
// Safe for concurrent use.
func InNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		// The goroutine owns a locked thread; returning without unlocking
		// makes the runtime throw the thread away.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("reading current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leaving network namespace %s: %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// NS is an open network namespace: a netlink handle whose sockets live in
// it, plus its path for the few operations (sysctl, ethtool, raw packets)
// that need a thread inside it. Methods of the handle are safe for
// concurrent use as netlink.Handle documents; Close once when done.
type NS struct {
	Path string // "" = the agent's own namespace
	H    *netlink.Handle
}

// OpenNS opens the network namespace named by spec (see ResolveNetns); ""
// opens the agent's own namespace.
func OpenNS(spec string) (*NS, error) {
	if spec == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("opening netlink handle: %w", err)
		}
		return &NS{H: h}, nil
	}
	path, err := ResolveNetns(spec)
	if err != nil {
		return nil, err
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("opening netlink handle in %s: %w", path, err)
	}
	return &NS{Path: path, H: h}, nil
}

// Close releases the netlink handle.
func (n *NS) Close() {
	if n != nil && n.H != nil {
		n.H.Close()
	}
}

// Do runs fn inside the namespace (see InNetns).
func (n *NS) Do(fn func() error) error { return InNetns(n.Path, fn) }

// String names the namespace for messages.
func (n *NS) String() string {
	if n.Path == "" {
		return "host namespace"
	}
	return "namespace " + n.Path
}

// IsNotFound reports whether err says a link, route, address or neighbour
// does not exist.
func IsNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) ||
		errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EADDRNOTAVAIL)
}
