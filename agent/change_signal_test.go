package agent

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestChangeSignal: fire closes the channel every waiter holds, a channel
// taken after fire waits for the next one, and a fire with no waiter is
// not remembered (the waiter looks at the state after taking the channel).
func TestChangeSignal(t *testing.T) {
	var s changeSignal
	s.fire() // nobody waits: nothing kept
	a, b := s.wait(), s.wait()
	if a != b || closed(a) {
		t.Fatal("two waiters before a fire must share one open channel")
	}
	s.fire()
	if !closed(a) {
		t.Fatal("fire did not wake the waiters")
	}
	c := s.wait()
	if closed(c) {
		t.Fatal("a channel taken after the fire is already closed")
	}
	s.fire()
	s.fire() // a second fire with the channel gone must not panic
	if !closed(c) {
		t.Fatal("the next fire did not wake the later waiter")
	}
}

// TestChangeSignalUntil: a fire makes until look again at once (long
// before its recheck), it gives up after max, and an ended ctx counts as
// done.
func TestChangeSignalUntil(t *testing.T) {
	var s changeSignal
	var ok atomic.Bool
	res := make(chan bool, 1)
	start := time.Now()
	go func() { res <- s.until(context.Background(), ok.Load, time.Minute, time.Hour) }()
	time.Sleep(20 * time.Millisecond)
	s.fire() // a change that does not satisfy cond: wait again
	time.Sleep(20 * time.Millisecond)
	ok.Store(true)
	s.fire()
	select {
	case got := <-res:
		if !got {
			t.Fatal("until = false after cond held")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a fire did not wake until (it waited for the hour-long recheck)")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("until took %v", took)
	}
	if s.until(context.Background(), func() bool { return false }, 30*time.Millisecond, 10*time.Millisecond) {
		t.Fatal("until = true although cond never held")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if !s.until(ctx, func() bool { return false }, time.Hour, time.Hour) {
		t.Fatal("an ended ctx must count as done")
	}
	recheck := atomic.Int32{}
	if s.until(context.Background(), func() bool { return recheck.Add(1) >= 3 }, 5*time.Second, 5*time.Millisecond); recheck.Load() < 3 {
		t.Fatal("the recheck did not look again without a fire")
	}
}
