package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
)

// The plugin's own share of a `docker run`: the agents of the Docker lab
// serve metrics on their namespace's loopback, and the growth of
// flatmesh_docker_call_duration_seconds_sum (exact sums, per call) over one
// run is the time the plugin spent answering that run's calls.

const (
	dockerMetricsAddr = "127.0.0.1:9497"
	dockerCallSum     = "flatmesh_docker_call_duration_seconds_sum{"
	dockerCallCount   = "flatmesh_docker_call_duration_seconds_count{"
)

// callTotals is the sum of seconds and the count of plugin calls so far.
type callTotals struct {
	seconds float64
	calls   float64
}

// scrapeDockerCalls reads an agent's call totals from inside its namespace.
func scrapeDockerCalls(ctx context.Context, ns string) (callTotals, error) {
	out, err := nsExec(ctx, ns, "busybox", "wget", "-qO-", "http://"+dockerMetricsAddr+"/metrics")
	if err != nil {
		return callTotals{}, fmt.Errorf("agent metrics in %s: %w", ns, err)
	}
	return parseDockerCalls(out)
}

// parseDockerCalls adds up the sums and counts of every call and result.
func parseDockerCalls(text []byte) (callTotals, error) {
	var t callTotals
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		dst := &t.seconds
		switch {
		case strings.HasPrefix(line, dockerCallSum):
		case strings.HasPrefix(line, dockerCallCount):
			dst = &t.calls
		default:
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return callTotals{}, fmt.Errorf("metrics line %q: %w", line, err)
		}
		*dst += v
	}
	return t, sc.Err()
}

// since is what happened between before and t, in ms and calls.
func (t callTotals) since(before callTotals) (ms float64, calls int) {
	return (t.seconds - before.seconds) * 1000, int(t.calls - before.calls + 0.5)
}
