package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
)

// burstBench creates n namespaces, then runs n `flatmesh attach` CLI calls
// concurrently against host's agent and times them from the first start to
// the last answer; then the same for detach. The namespaces are removed
// afterwards.
func (e *env) burstBench(ctx context.Context, l *lab.Lab, host string, n int) (*BurstStats, error) {
	names, err := e.attachNamespaces(ctx, "b", n)
	defer e.removeNamespaces(names)
	if err != nil {
		return nil, err
	}
	b := &BurstStats{N: n}
	attach := func(ns string) error {
		_, err := l.CLIContext(ctx, host, "attach", lab.NetnsPath(ns), "--name", ns, "--json")
		return err
	}
	detach := func(ns string) error {
		_, err := l.CLIContext(ctx, host, "detach", ns)
		return err
	}
	var firstErr, derr error
	var ok, detached []string
	b.ElapsedMs, ok, firstErr = fanOut(names, attach)
	b.Failures = n - len(ok)
	b.DetachElapsedMs, detached, derr = fanOut(ok, detach)
	b.DetachFailures = len(ok) - len(detached)
	firstErr = cmpErr(firstErr, derr)
	e.say("burst: %d attaches at once took %s (%d failed); %d detaches at once took %s",
		n, ms(b.ElapsedMs), b.Failures, len(ok), ms(b.DetachElapsedMs))
	if firstErr != nil {
		b.FirstError = firstErr.Error()
		return b, fmt.Errorf("burst: %d of %d attaches failed, first: %w", b.Failures, n, firstErr)
	}
	return b, nil
}

// fanOut runs fn for every name at once and returns the time until the
// last returned, the names that succeeded (in input order) and the first
// error.
func fanOut(names []string, fn func(string) error) (float64, []string, error) {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	start := time.Now()
	for i, ns := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(ns)
		}()
	}
	wg.Wait()
	elapsed := msSince(start)
	var ok []string
	var first error
	for i, err := range errs {
		if err == nil {
			ok = append(ok, names[i])
		} else {
			first = cmpErr(first, fmt.Errorf("%s: %w", names[i], err))
		}
	}
	return elapsed, ok, first
}

// attachNamespaces creates n empty namespaces "<nsAttach>-<tag><i>" to
// attach; it returns those made so far also on error (for
// removeNamespaces).
func (e *env) attachNamespaces(ctx context.Context, tag string, n int) ([]string, error) {
	var names []string
	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("%s-%s%d", nsAttach, tag, i)
		names = append(names, ns)
		if err := e.createNetns(ctx, ns); err != nil {
			return names, err
		}
	}
	return names, nil
}

// removeNamespaces deletes namespaces made by attachNamespaces (unless
// --keep), on a context of its own.
func (e *env) removeNamespaces(names []string) {
	if e.o.Keep {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	for _, ns := range names {
		_ = deleteNetns(ctx, ns)
	}
}
