package agent

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/ipam"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func fakeSource() metricsSource {
	return metricsSource{
		name: "h1",
		info: map[string]string{"version": "1.0", "mode": "vxlan", "cluster": "c", "name": "h1"},
		members: func() []cluster.Peer {
			return []cluster.Peer{
				{Name: "h1", Addr: netip.MustParseAddr("10.0.0.1"), State: cluster.StateAlive},
				{Name: "h2", Addr: netip.MustParseAddr("10.0.0.2"), State: cluster.StateAlive},
				{Name: "h3", Addr: netip.MustParseAddr("10.0.0.3"), State: cluster.StateSuspect},
				{Name: "h4", Addr: netip.MustParseAddr("10.0.0.4"), State: cluster.StateLeft},
			}
		},
		blocks: func() []ipam.BlockInfo {
			return []ipam.BlockInfo{
				{Owner: "h1", Used: 3, Free: 58, Cooling: 1},
				{Owner: "h1", Used: 0, Free: 62},
				{Owner: "h2", Used: 7, Free: 55},
				{Owner: ""},
			}
		},
		lastApplied: func() time.Time { return time.Unix(1700000000, 500e6) },
	}
}

// scrape serves the registry as Prometheus would see it.
func scrape(t *testing.T, m *metrics) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMetricsExposition(t *testing.T) {
	m := newMetrics(fakeSource())
	m.pass(time.Now().Add(-3*time.Millisecond), nil)
	m.pass(time.Now(), errors.New("boom"))
	a := &Agent{metrics: m}
	h := a.timed("attach", func(*http.Request) (any, error) { time.Sleep(2 * time.Millisecond); return nil, nil })
	_, _ = h(nil)
	d := a.timed("detach", func(*http.Request) (any, error) { return nil, errors.New("no such container") })
	_, _ = d(nil)
	s := &gossipSink{m: m}
	s.IncrCounterWithLabels([]string{"memberlist", "udp", "sent"}, 120, nil)
	s.IncrCounterWithLabels([]string{"memberlist", "udp", "sent"}, 80, nil)
	s.IncrCounterWithLabels([]string{"memberlist", "udp", "received"}, 90, nil)
	s.IncrCounterWithLabels([]string{"memberlist", "tcp", "sent"}, 1000, nil)
	s.IncrCounterWithLabels([]string{"memberlist", "tcp", "accept"}, 1, nil)
	s.IncrCounterWithLabels([]string{"memberlist", "msg", "suspect"}, 1, nil)
	s.IncrCounter([]string{"memberlist", "gossip"}, 1) // ignored
	m.readyTimeout("peers")
	(*metrics)(nil).readyTimeout("pass") // metrics off: records nothing, no panic
	text := scrape(t, m)
	for _, want := range []string{
		`flatmesh_members{state="alive"} 2`, `flatmesh_members{state="suspect"} 1`,
		`flatmesh_members{state="left"} 1`, `flatmesh_members{state="failed"} 0`,
		"flatmesh_reconcile_passes_total 2", "flatmesh_reconcile_errors_total 1",
		"flatmesh_reconcile_duration_seconds_count 2",
		`flatmesh_ipam_blocks{owner="self"} 2`, `flatmesh_ipam_blocks{owner="other"} 1`, `flatmesh_ipam_blocks{owner="none"} 1`,
		`flatmesh_ipam_addresses{state="used"} 3`, `flatmesh_ipam_addresses{state="free"} 120`, `flatmesh_ipam_addresses{state="cooling"} 1`,
		`flatmesh_container_op_duration_seconds_count{op="attach",result="ok"} 1`,
		`flatmesh_container_op_duration_seconds_count{op="detach",result="error"} 1`,
		`flatmesh_container_op_duration_seconds_count{op="attach",result="error"} 0`,
		`flatmesh_gossip_messages_total{direction="sent",proto="udp"} 2`,
		`flatmesh_gossip_bytes_total{direction="sent",proto="udp"} 200`,
		`flatmesh_gossip_bytes_total{direction="received",proto="udp"} 90`,
		`flatmesh_gossip_bytes_total{direction="sent",proto="tcp"} 1000`,
		`flatmesh_gossip_tcp_connections_total{direction="in"} 1`,
		`flatmesh_gossip_member_messages_total{type="suspect"} 1`,
		`flatmesh_attach_ready_timeouts_total{wait="peers"} 1`, `flatmesh_attach_ready_timeouts_total{wait="pass"} 0`,
		`flatmesh_info{cluster="c",mode="vxlan",name="h1",version="1.0"} 1`,
		"flatmesh_reconcile_last_success_timestamp_seconds 1.7000000005e+09",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("missing %q", want)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", text)
	}
	promtoolCheck(t, text)
}

// promtoolCheck runs Prometheus' own linter over the exposition.
func promtoolCheck(t *testing.T, text string) {
	t.Helper()
	pt, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("skipping promtool check: promtool is not installed (Debian package prometheus; .ci/run installs it)")
	}
	cmd := exec.Command(pt, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || strings.TrimSpace(out.String()) != "" {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
}

func TestMetricsOffRecordsNothing(t *testing.T) {
	var m *metrics
	m.pass(time.Now(), nil) // must not panic
	a := &Agent{}
	if _, err := a.timed("attach", func(*http.Request) (any, error) { return 1, nil })(nil); err != nil {
		t.Fatal(err)
	}
}

func TestValidMetricsAddr(t *testing.T) {
	for _, ok := range []string{"", "127.0.0.1:9496", "[::1]:9496", "0.0.0.0:9100"} {
		if err := validMetricsAddr(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"9496", "localhost:9496", "127.0.0.1", "127.0.0.1:0", ":9496"} {
		if err := validMetricsAddr(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
