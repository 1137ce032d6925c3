package dns

import (
	"net/netip"
	"sync"
	"time"
)

// maxSources bounds the rate limiter's memory: beyond it, idle sources are
// swept, and a new source is refused while the table is still full.
const maxSources = 16384

// limiter is a token bucket per source address. Safe for concurrent use.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newLimiter returns nil (no limit) for rate <= 0.
func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	if rate <= 0 {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	if now == nil {
		now = time.Now
	}
	return &limiter{rate: rate, burst: float64(burst), now: now, buckets: map[netip.Addr]*bucket{}}
}

// allow takes one token from src's bucket.
func (l *limiter) allow(src netip.Addr) bool {
	if l == nil {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[src]
	if !ok {
		if len(l.buckets) >= maxSources && !l.sweep(now) {
			return false
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[src] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep drops buckets that have refilled completely (their sources have
// been idle), at most once a second (a flood of new sources must not make
// every packet walk the table); it reports whether there is room. Caller
// holds mu.
func (l *limiter) sweep(now time.Time) bool {
	if now.Sub(l.lastSweep) < time.Second {
		return false
	}
	l.lastSweep = now
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for a, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, a)
		}
	}
	return len(l.buckets) < maxSources
}
