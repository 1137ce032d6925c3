package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kernel"
)

// sink is a TCP server inside a namespace that hashes what it receives and
// records the peer's address (to prove no NAT happened).
type sink struct {
	ln   net.Listener
	done chan sinkResult
}

type sinkResult struct {
	remote netip.Addr
	sum    string
	n      int64
	err    error
}

// listenIn opens a TCP listener inside the namespace; the socket stays in
// that namespace whatever thread later uses it.
func listenIn(t *testing.T, netns string, port int) *sink {
	t.Helper()
	var ln net.Listener
	err := kernel.InNetns(lab.NetnsPath(netns), func() error {
		var err error
		ln, err = net.Listen("tcp", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		t.Fatalf("listening in %s: %v", netns, err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &sink{ln: ln, done: make(chan sinkResult, 1)}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			s.done <- sinkResult{err: err}
			return
		}
		defer c.Close()
		ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		h := sha256.New()
		n, err := io.Copy(h, c)
		s.done <- sinkResult{remote: ap.Addr().Unmap(), sum: hex.EncodeToString(h.Sum(nil)), n: n, err: err}
	}()
	return s
}

// dialIn connects from inside a namespace.
func dialIn(t *testing.T, netns string, addr netip.AddrPort) net.Conn {
	t.Helper()
	var c net.Conn
	err := kernel.InNetns(lab.NetnsPath(netns), func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr.String(), 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dialing %s from %s: %v", addr, netns, err)
	}
	return c
}

// sendPaced writes total bytes of seeded random data in chunks, pausing
// between them, and returns the SHA-256 of what it sent. tick, when set,
// is called after each chunk with the chunk number.
func sendPaced(c net.Conn, total, chunk int, pause time.Duration, tick func(int)) (string, error) {
	rng := rand.New(rand.NewSource(42))
	h := sha256.New()
	buf := make([]byte, chunk)
	for i, sent := 0, 0; sent < total; i++ {
		rng.Read(buf)
		n := min(chunk, total-sent)
		if _, err := c.Write(buf[:n]); err != nil {
			return "", fmt.Errorf("after %d bytes: %w", sent, err)
		}
		h.Write(buf[:n])
		sent += n
		if tick != nil {
			tick(i)
		}
		time.Sleep(pause)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func waitSink(t *testing.T, s *sink, timeout time.Duration) sinkResult {
	t.Helper()
	select {
	case r := <-s.done:
		if r.err != nil {
			t.Fatalf("receiver: %v", r.err)
		}
		return r
	case <-time.After(timeout):
		t.Fatalf("receiver got nothing within %s", timeout)
	}
	return sinkResult{}
}
