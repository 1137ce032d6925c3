package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// dockerObserver records how long each call from Docker took, in
// flatmesh_docker_call_duration_seconds{call,result} (the histogram's _sum
// per call is exact, so the time the plugin adds to one `docker run` is the
// growth of the sums over it: make bench reads it so). Nil without metrics.
func (m *metrics) dockerObserver() func(call string, took time.Duration, failed bool) {
	if m == nil {
		return nil
	}
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "flatmesh_docker_call_duration_seconds",
		Help:    "Time the Docker network and IPAM plugin took to answer a call, by call and result.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"call", "result"})
	if err := m.reg.Register(h); err != nil {
		return nil
	}
	return func(call string, took time.Duration, failed bool) {
		result := "ok"
		if failed {
			result = "error"
		}
		h.WithLabelValues(call, result).Observe(took.Seconds())
	}
}
