package firewall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// newGenType is the netlink message type nf_tables multicasts at the end of
// every committed ruleset change (iptables-nft, Docker, nft): one per
// transaction, whatever it changed.
const newGenType = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN

// WatchChanges calls changed after every committed change of the nftables
// ruleset of the namespace at netnsPath ("" = ours) until ctx ends; our own
// writes count too. It returns an error at once when the events cannot be
// subscribed to; otherwise it runs the watch in a goroutine and returns
// nil. Changes made with iptables-legacy send no event (Check reports
// legacy tables). Lost events (a full socket buffer) also call changed.
// The socket is non-blocking and waits in Go's network poller: an idle
// watch costs no wakeup and no thread (it used to poll every 500 ms in a
// blocked read); ctx ending closes it.
func WatchChanges(ctx context.Context, netnsPath string, changed func()) error {
	f, err := openNftEvents(netnsPath)
	if err != nil {
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("watching nftables events: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { f.Close() }) // wakes a waiting read
	go func() {
		defer f.Close()
		defer stop()
		buf := make([]byte, 64<<10)
		for {
			var n int
			var rerr error
			if err := rc.Read(func(fd uintptr) bool {
				n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
				return !errors.Is(rerr, unix.EAGAIN) // EAGAIN: wait for readiness
			}); err != nil {
				return // closed: ctx ended
			}
			switch {
			case errors.Is(rerr, unix.EINTR):
			case errors.Is(rerr, unix.ENOBUFS):
				changed() // events lost: something changed
			case rerr != nil:
				return
			case hasNewGen(buf[:n]):
				changed()
			}
		}
	}()
	return nil
}

// openNftEvents opens a non-blocking netfilter netlink socket in the
// namespace at netnsPath, subscribed to the nftables group, as an *os.File
// registered with Go's network poller.
func openNftEvents(netnsPath string) (*os.File, error) {
	path, err := resolve(netnsPath)
	if err != nil {
		return nil, err
	}
	var fd int
	err = kernel.InNetns(path, func() error {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening a netfilter netlink socket: %w", err)
	}
	if err := errors.Join(
		unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}),
		unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.NFNLGRP_NFTABLES),
	); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("subscribing to nftables events: %w", err)
	}
	return os.NewFile(uintptr(fd), "nftables-events"), nil // non-blocking: pollable
}

// hasNewGen reports whether a netlink datagram holds a new-generation
// message (the end of a ruleset transaction).
func hasNewGen(b []byte) bool {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return true // unreadable: treat as a change
	}
	for _, m := range msgs {
		if m.Header.Type == newGenType {
			return true
		}
	}
	return false
}
