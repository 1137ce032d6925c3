package agent

import (
	"context"
	"sync"
	"time"
)

// changeSignal is a broadcast of "something changed": wait returns a
// channel that the next fire closes. Waiters take the channel before they
// look at the state, so a change between the look and the wait is not
// lost. fire costs a lock and nothing else while nobody waits. The zero
// value is ready; safe for concurrent use.
type changeSignal struct {
	mu sync.Mutex
	ch chan struct{} // nil while nobody waits
}

// wait returns the channel the next fire closes.
func (s *changeSignal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// fire wakes every current waiter.
func (s *changeSignal) fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// until waits until cond holds (true), for at most max (false), looking
// again after every fire and, as a safety net, every recheck. An ended ctx
// returns true: the caller's request is over anyway.
func (s *changeSignal) until(ctx context.Context, cond func() bool, max, recheck time.Duration) bool {
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	for {
		changed := s.wait() // before the look: a change after it wakes us
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return true
		case <-deadline.C:
			return false
		case <-changed:
		case <-time.After(recheck):
		}
	}
}
