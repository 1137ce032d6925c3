package cluster

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeRetryClock hands out timers the test fires by hand.
type fakeRetryClock struct {
	mu     sync.Mutex
	asked  []time.Duration
	timers []chan time.Time
	armed  chan struct{} // one value per timer asked for
}

func (f *fakeRetryClock) after(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(chan time.Time, 1)
	f.asked = append(f.asked, d)
	f.timers = append(f.timers, c)
	f.armed <- struct{}{}
	return c
}

func (f *fakeRetryClock) fire(i int) {
	f.mu.Lock()
	c := f.timers[i]
	f.mu.Unlock()
	c <- time.Time{}
}

func (f *fakeRetryClock) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.asked)
}

// TestRetryLoopTicksOnlyWhileMembersFailed: with no failed member the loop
// asks for no timer however many member changes come; a failure arms one
// timer of the interval, whose firing retries exactly the failed
// addresses; it re-arms while the member stays failed and stops arming
// once it is back.
func TestRetryLoopTicksOnlyWhileMembersFailed(t *testing.T) {
	clk := &fakeRetryClock{armed: make(chan struct{}, 16)}
	changed, done := make(chan struct{}, 1), make(chan struct{})
	var mu sync.Mutex
	var failed []netip.AddrPort
	retried := make(chan []netip.AddrPort, 16)
	r := retryLoop[netip.AddrPort]{every: 30 * time.Second, after: clk.after, changed: changed, done: done,
		failed: func() []netip.AddrPort { mu.Lock(); defer mu.Unlock(); return failed },
		retry:  func(a []netip.AddrPort) bool { retried <- a; return true }}
	ended := make(chan struct{})
	go func() { r.run(); close(ended) }()
	t.Cleanup(func() { close(done); <-ended })

	setFailed := func(a ...netip.AddrPort) {
		mu.Lock()
		failed = a
		mu.Unlock()
		changed <- struct{}{}
	}
	waitArmed := func(what string) {
		t.Helper()
		select {
		case <-clk.armed:
		case <-time.After(5 * time.Second):
			t.Fatalf("no timer armed %s", what)
		}
	}
	quiet := func(what string) {
		t.Helper()
		time.Sleep(50 * time.Millisecond)
		select {
		case <-clk.armed:
			t.Fatalf("a timer was armed %s", what)
		case a := <-retried:
			t.Fatalf("retried %v %s", a, what)
		default:
		}
	}

	setFailed() // a change with nobody failed
	setFailed()
	quiet("with no failed member")

	b := netip.MustParseAddrPort("192.0.2.2:7496")
	setFailed(b)
	waitArmed("after a member failed")
	if got := clk.asked[0]; got != 30*time.Second {
		t.Fatalf("timer of %v, want the interval 30s", got)
	}
	setFailed(b) // another change while armed: still one timer
	quiet("by a change while a timer is pending")
	clk.fire(0)
	if a := <-retried; len(a) != 1 || a[0] != b {
		t.Fatalf("retried %v, want [%v]", a, b)
	}
	waitArmed("while the member stays failed")
	mu.Lock()
	failed = nil // it answered
	mu.Unlock()
	clk.fire(1)
	quiet("after the member came back")
	if n := clk.count(); n != 2 {
		t.Fatalf("%d timers asked for, want 2", n)
	}
}

// TestRetryLoopStopsWhenRetryRefuses: a retry after Leave (retry reports
// false) ends the loop.
func TestRetryLoopStopsWhenRetryRefuses(t *testing.T) {
	clk := &fakeRetryClock{armed: make(chan struct{}, 16)}
	addr := netip.MustParseAddrPort("192.0.2.2:7496")
	r := retryLoop[netip.AddrPort]{every: time.Second, after: clk.after, changed: make(chan struct{}), done: make(chan struct{}),
		failed: func() []netip.AddrPort { return []netip.AddrPort{addr} },
		retry:  func([]netip.AddrPort) bool { return false }}
	ended := make(chan struct{})
	go func() { r.run(); close(ended) }()
	<-clk.armed
	clk.fire(0)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not end when retry refused")
	}
}
