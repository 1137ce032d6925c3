package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestProcCPUCountsOwnWork: spinning 200 ms raises this process's CPU time
// by about that much; the table row shows the median per stream count.
func TestProcCPUCountsOwnWork(t *testing.T) {
	pids := []int{os.Getpid()}
	c0, t0, err := procCPUNow(pids)
	if err != nil {
		t.Fatal(err)
	}
	for x := 0; time.Since(t0) < 200*time.Millisecond; x++ {
		_ = x * x
	}
	cores, ok := coresSince(pids, c0, t0, nil)
	if !ok || cores < 0.3 || cores > 2.5 {
		t.Fatalf("busy loop measured %.2f cores (ok %v), want about 1", cores, ok)
	}
	if _, err := procCPU([]int{1 << 30}); err == nil {
		t.Error("no error for a missing pid")
	}
	var b strings.Builder
	s := &SuiteReport{Paths: []PathResult{{Key: "a", CPUOf: "agents", Throughput: []Throughput{
		{Streams: 1, CoresPerGbps: &Series{Samples: []float64{0.5, 0.7, 0.6}, Median: 0.6}}}}, {Key: "c"}}}
	writeCPU(&b, s, []int{1, 2})
	if got := b.String(); got != "  cpu (a) cores per Gbit/s\t0.600\t-\tagents\n" {
		t.Errorf("row %q", got)
	}
}
