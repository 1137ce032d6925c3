package lab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// withDefaultTimeout bounds ctx by the lab's timeout (Options.Timeout); an
// earlier deadline of ctx wins.
func (l *Lab) withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	l.mu.Lock()
	t := l.timeout
	l.mu.Unlock()
	return context.WithTimeout(ctx, t)
}

// WaitReady waits until each host's agent answers `status --json` on its
// socket. It fails early, with the log tail, when an agent process exits,
// and on timeout (ctx's deadline or the lab's timeout, whichever comes
// first) with the last error.
func (l *Lab) WaitReady(ctx context.Context, hosts ...string) error {
	ctx, cancel := l.withDefaultTimeout(ctx)
	defer cancel()
	start := time.Now()
	for _, name := range hosts {
		var lastErr error
		for {
			if !l.AgentRunning(name) {
				return fmt.Errorf("agent %s is not running (it exited before its socket answered); log tail:\n%s",
					name, l.LogTail(name, tailLines))
			}
			_, err := l.AgentStatus(ctx, name)
			if err == nil {
				break
			}
			if ctx.Err() == nil || lastErr == nil {
				lastErr = err
			}
			if err := SleepContext(ctx, pollEvery); err != nil {
				h, _ := l.Host(name)
				return fmt.Errorf("agent %s: socket %s did not answer within %s: %v; log tail:\n%s",
					name, h.Socket, time.Since(start).Round(time.Millisecond), lastErr, l.LogTail(name, tailLines))
			}
		}
	}
	return nil
}

// WaitAlive waits until each of hosts (all hosts whose agent runs, when
// none are named) reports exactly n live members, itself included. On
// timeout the error lists what each agent sees, with the log tails of those
// that disagree.
func (l *Lab) WaitAlive(ctx context.Context, n int, hosts ...string) error {
	ctx, cancel := l.withDefaultTimeout(ctx)
	defer cancel()
	if len(hosts) == 0 {
		for _, h := range l.Hosts() {
			if l.AgentRunning(h.Name) {
				hosts = append(hosts, h.Name)
			}
		}
	}
	if len(hosts) == 0 {
		return errors.New("waiting for members: no agent is running")
	}
	start := time.Now()
	var last map[string]string // the last round not cut short by the deadline
	for {
		seen := map[string]string{}
		ok := true
		for _, name := range hosts {
			st, err := l.AgentStatus(ctx, name)
			switch {
			case err != nil:
				seen[name], ok = err.Error(), false
			case st.Alive != n:
				seen[name], ok = fmt.Sprintf("sees %d alive", st.Alive), false
			}
		}
		if ok {
			l.log.Debug("members converged", "alive", n, "took", time.Since(start))
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = seen
		}
		if err := SleepContext(ctx, pollEvery); err != nil {
			return l.notConverged(n, time.Since(start), hosts, last)
		}
	}
}

func (l *Lab) notConverged(n int, took time.Duration, hosts []string, seen map[string]string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "agents did not all see %d members alive within %s:", n, took.Round(time.Millisecond))
	for _, name := range hosts {
		if s, bad := seen[name]; bad {
			fmt.Fprintf(&b, "\n  %s: %s; log tail:\n%s", name, s, l.LogTail(name, tailLines))
		}
	}
	return errors.New(b.String())
}

// SleepContext sleeps d or until ctx ends (returning its error).
func SleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
