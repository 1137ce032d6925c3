package agent

import (
	"strings"
	"testing"
	"time"
)

func TestDockerCallMetrics(t *testing.T) {
	var none *metrics
	if none.dockerObserver() != nil {
		t.Fatal("an observer without metrics")
	}
	m := newMetrics(fakeSource())
	obs := m.dockerObserver()
	obs("NetworkDriver.Join", 3*time.Millisecond, false)
	obs("NetworkDriver.Join", 2*time.Millisecond, false)
	obs("IpamDriver.RequestAddress", time.Millisecond, true)
	text := scrape(t, m)
	for _, want := range []string{
		`flatmesh_docker_call_duration_seconds_count{call="NetworkDriver.Join",result="ok"} 2`,
		`flatmesh_docker_call_duration_seconds_sum{call="NetworkDriver.Join",result="ok"} 0.005`,
		`flatmesh_docker_call_duration_seconds_count{call="IpamDriver.RequestAddress",result="error"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %s in:\n%s", want, text)
		}
	}
}
