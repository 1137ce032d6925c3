package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/ipam"
	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's Prometheus metrics, served on --metrics-addr (off
// by default). A nil *metrics records nothing, so the hooks cost nothing
// when metrics are off. Safe for concurrent use.
type metrics struct {
	reg          *prometheus.Registry
	passes       prometheus.Counter
	passErrors   prometheus.Counter
	passDuration prometheus.Histogram
	containerOps *prometheus.HistogramVec // op=attach|detach, result=ok|error
	gossipPkts   *prometheus.CounterVec   // proto, direction
	gossipBytes  *prometheus.CounterVec   // proto, direction
	gossipConns  *prometheus.CounterVec   // direction
	memberMsgs   *prometheus.CounterVec   // type=alive|suspect|dead
	readyGaveUp  *prometheus.CounterVec   // wait=pass|peers
	srv          *http.Server
}

// metricsSource is what the scrape-time collector reads; the agent gives
// its cluster and allocator, tests give fakes.
type metricsSource struct {
	name        string
	info        map[string]string // constant labels of flatmesh_info
	members     func() []cluster.Peer
	blocks      func() []ipam.BlockInfo
	lastApplied func() time.Time
}

func newMetrics(src metricsSource) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		passes: prometheus.NewCounter(prometheus.CounterOpts{Name: "flatmesh_reconcile_passes_total",
			Help: "Reconcile passes run."}),
		passErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "flatmesh_reconcile_errors_total",
			Help: "Reconcile passes that failed to program the data plane."}),
		passDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "flatmesh_reconcile_duration_seconds",
			Help: "Time a reconcile pass took.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}),
		containerOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "flatmesh_container_op_duration_seconds",
			Help:    "Attach and detach latency as the API answered them.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}, []string{"op", "result"}),
		gossipPkts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flatmesh_gossip_messages_total",
			Help: "Gossip packets (UDP) and stream messages (TCP) sent and received by memberlist."}, []string{"proto", "direction"}),
		gossipBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flatmesh_gossip_bytes_total",
			Help: "Gossip bytes sent and received by memberlist (TCP: sent only; memberlist does not count received stream bytes)."}, []string{"proto", "direction"}),
		gossipConns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flatmesh_gossip_tcp_connections_total",
			Help: "Gossip TCP connections opened (out) and accepted (in)."}, []string{"direction"}),
		memberMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flatmesh_gossip_member_messages_total",
			Help: "Membership messages handled, by type."}, []string{"type"}),
		readyGaveUp: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flatmesh_attach_ready_timeouts_total",
			Help: "Attaches that answered before the container was known reachable: the wait for a reconcile pass (pass) or for the peers' views to agree (peers) ran out."}, []string{"wait"}),
	}
	m.reg.MustRegister(m.passes, m.passErrors, m.passDuration, m.containerOps, m.gossipPkts, m.gossipBytes,
		m.gossipConns, m.memberMsgs, m.readyGaveUp, newStateCollector(src))
	for _, w := range []string{"pass", "peers"} {
		m.readyGaveUp.WithLabelValues(w)
	}
	for _, op := range []string{"attach", "detach"} {
		for _, res := range []string{"ok", "error"} {
			m.containerOps.WithLabelValues(op, res)
		}
	}
	return m
}

// pass records one reconcile pass.
func (m *metrics) pass(start time.Time, err error) {
	if m == nil {
		return
	}
	m.passes.Inc()
	if err != nil {
		m.passErrors.Inc()
	}
	m.passDuration.Observe(time.Since(start).Seconds())
}

// readyTimeout records an attach whose readiness wait (pass or peers) ran
// out: the container may miss its first packets.
func (m *metrics) readyTimeout(wait string) {
	if m != nil {
		m.readyGaveUp.WithLabelValues(wait).Inc()
	}
}

// timed wraps an API handler so its latency lands in containerOps.
func (a *Agent) timed(op string, h api.Handler) api.Handler {
	return func(r *http.Request) (any, error) {
		start := time.Now()
		out, err := h(r)
		if m := a.metrics; m != nil {
			res := "ok"
			if err != nil {
				res = "error"
			}
			m.containerOps.WithLabelValues(op, res).Observe(time.Since(start).Seconds())
		}
		return out, err
	}
}

// validMetricsAddr checks --metrics-addr: empty (off) or IP:PORT.
func validMetricsAddr(s string) error {
	if s == "" {
		return nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return errors.New("want IP:PORT, such as 127.0.0.1:9496")
	}
	return nil
}

// startMetrics serves /metrics on --metrics-addr when it is set, and feeds
// memberlist's own counters (go-metrics, a process-wide sink: memberlist
// offers no other way) into the registry.
func (a *Agent) startMetrics() error {
	if a.cfg.MetricsAddr == "" {
		return nil
	}
	m := newMetrics(metricsSource{
		name:        a.cfg.Name,
		info:        map[string]string{"version": a.version, "mode": a.cfg.Mode, "cluster": a.cfg.Cluster, "name": a.cfg.Name},
		members:     a.cl.Members,
		blocks:      a.ipam.Blocks,
		lastApplied: func() time.Time { return a.lastPass().applied },
	})
	cfg := gometrics.DefaultConfig("")
	cfg.EnableHostname, cfg.EnableRuntimeMetrics = false, false
	if _, err := gometrics.NewGlobal(cfg, &gossipSink{m: m}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics: listening on %s: %w", a.cfg.MetricsAddr, err)
	}
	if ap, _ := netip.ParseAddrPort(a.cfg.MetricsAddr); !ap.Addr().IsLoopback() {
		a.log.Warn("metrics are served beyond loopback: keep the port on a management network", "addr", a.cfg.MetricsAddr)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	a.metrics = m
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server stopped", "error", err)
		}
	}()
	a.log.Info("serving metrics", "addr", a.cfg.MetricsAddr)
	return nil
}

func (a *Agent) stopMetrics() {
	if a.metrics == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.metrics.srv.Shutdown(ctx)
}

// stateCollector reads members, IPAM and the last good pass at scrape time.
type stateCollector struct {
	src                                       metricsSource
	info, members, blocks, addrs, lastApplied *prometheus.Desc
}

var _ prometheus.Collector = (*stateCollector)(nil)

func newStateCollector(src metricsSource) *stateCollector {
	labels := make([]string, 0, len(src.info))
	for _, k := range []string{"version", "mode", "cluster", "name"} {
		if _, ok := src.info[k]; ok {
			labels = append(labels, k)
		}
	}
	return &stateCollector{
		src:  src,
		info: prometheus.NewDesc("flatmesh_info", "The agent's version, mode, cluster and name (always 1).", nil, src.info),
		members: prometheus.NewDesc("flatmesh_members", "Members of the cluster as this agent sees them, by state.",
			[]string{"state"}, nil),
		blocks: prometheus.NewDesc("flatmesh_ipam_blocks", "IPAM blocks by owner: this host (self), other members (other), nobody (none).",
			[]string{"owner"}, nil),
		addrs: prometheus.NewDesc("flatmesh_ipam_addresses", "Addresses in this host's blocks: allocated (used), free, released less than the cooldown ago (cooling).",
			[]string{"state"}, nil),
		lastApplied: prometheus.NewDesc("flatmesh_reconcile_last_success_timestamp_seconds",
			"When a reconcile pass last programmed the data plane without error (0: never).", nil, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.info, c.members, c.blocks, c.addrs, c.lastApplied} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1)
	states := map[cluster.State]float64{cluster.StateAlive: 0, cluster.StateSuspect: 0, cluster.StateFailed: 0, cluster.StateLeft: 0}
	for _, p := range c.src.members() {
		states[p.State]++
	}
	for st, n := range states {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, n, string(st))
	}
	owners := map[string]float64{"self": 0, "other": 0, "none": 0}
	addrs := map[string]float64{"used": 0, "free": 0, "cooling": 0}
	for _, b := range c.src.blocks() {
		switch b.Owner {
		case c.src.name:
			owners["self"]++
			addrs["used"] += float64(b.Used)
			addrs["free"] += float64(b.Free)
			addrs["cooling"] += float64(b.Cooling)
		case "":
			owners["none"]++
		default:
			owners["other"]++
		}
	}
	for k, n := range owners {
		ch <- prometheus.MustNewConstMetric(c.blocks, prometheus.GaugeValue, n, k)
	}
	for k, n := range addrs {
		ch <- prometheus.MustNewConstMetric(c.addrs, prometheus.GaugeValue, n, k)
	}
	var ts float64
	if t := c.src.lastApplied(); !t.IsZero() {
		ts = float64(t.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(c.lastApplied, prometheus.GaugeValue, ts)
}

// gossipSink receives memberlist's go-metrics counters and keeps the
// message and byte counts (every other key is dropped).
type gossipSink struct{ m *metrics }

var _ gometrics.MetricSink = (*gossipSink)(nil)

func (s *gossipSink) IncrCounterWithLabels(key []string, val float32, _ []gometrics.Label) {
	k := strings.Join(key, ".")
	switch {
	case k == "memberlist.udp.sent", k == "memberlist.udp.received", k == "memberlist.tcp.sent":
		dir := key[2]
		s.m.gossipPkts.WithLabelValues(key[1], dir).Inc()
		s.m.gossipBytes.WithLabelValues(key[1], dir).Add(float64(val))
	case k == "memberlist.tcp.accept":
		s.m.gossipConns.WithLabelValues("in").Inc()
	case k == "memberlist.tcp.connect":
		s.m.gossipConns.WithLabelValues("out").Inc()
	case strings.HasPrefix(k, "memberlist.msg."):
		s.m.memberMsgs.WithLabelValues(key[2]).Inc()
	}
}

func (s *gossipSink) IncrCounter(key []string, val float32) { s.IncrCounterWithLabels(key, val, nil) }
func (s *gossipSink) SetGauge([]string, float32)            {}
func (s *gossipSink) SetGaugeWithLabels([]string, float32, []gometrics.Label) {
}
func (s *gossipSink) EmitKey([]string, float32)                                {}
func (s *gossipSink) AddSample([]string, float32)                              {}
func (s *gossipSink) AddSampleWithLabels([]string, float32, []gometrics.Label) {}
