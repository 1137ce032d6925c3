package firewall

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// newGenType is the netlink message type nf_tables multicasts at the end of
// every committed ruleset change (iptables-nft, Docker, nft): one per
// transaction, whatever it changed.
const newGenType = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN

// watchPoll bounds how long a blocked read keeps the watch from seeing ctx
// end.
const watchPoll = 500 * time.Millisecond

// WatchChanges calls changed after every committed change of the nftables
// ruleset of the namespace at netnsPath ("" = ours) until ctx ends; our own
// writes count too. It returns an error at once when the events cannot be
// subscribed to; otherwise it runs the watch in a goroutine and returns
// nil. Changes made with iptables-legacy send no event (Check reports
// legacy tables). Lost events (a full socket buffer) also call changed.
func WatchChanges(ctx context.Context, netnsPath string, changed func()) error {
	path, err := resolve(netnsPath)
	if err != nil {
		return err
	}
	var fd int
	err = kernel.InNetns(path, func() error {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return fmt.Errorf("opening a netfilter netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(watchPoll.Nanoseconds())
	if err := errors.Join(
		unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}),
		unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.NFNLGRP_NFTABLES),
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv),
	); err != nil {
		unix.Close(fd)
		return fmt.Errorf("subscribing to nftables events: %w", err)
	}
	go func() {
		defer unix.Close(fd)
		buf := make([]byte, 64<<10)
		for ctx.Err() == nil {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			switch {
			case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			case errors.Is(err, unix.ENOBUFS):
				changed() // events lost: something changed
			case err != nil:
				return
			case hasNewGen(buf[:n]):
				changed()
			}
		}
	}()
	return nil
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
