package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// The names scripts read: path (d) and its ratio "d/c", and
// "burst": {"n", "failures", "elapsed_ms"} in the vxlan suite.
func TestDirectRatioAndBurstNames(t *testing.T) {
	s := testSuite()
	s.Paths = append(s.Paths, path("d", "flatmesh VXLAN --direct-routing", 0.03, map[int][]float64{1: {9.9, 9.8, 10.1}}))
	s.computeRatios([][2]string{{"a", "b"}, {"d", "c"}}, []int{1, 2})
	s.Burst = &BurstStats{N: 100, Failures: 2, ElapsedMs: 1234.5, DetachElapsedMs: 800, DetachFailures: 0}
	rep := &Report{Streams: []int{1, 2}, VXLAN: s}

	var js bytes.Buffer
	if err := printReport(&js, rep, true); err != nil {
		t.Fatal(err)
	}
	var back struct {
		VXLAN struct {
			Ratios []Ratio `json:"ratios"`
			Burst  map[string]any
		} `json:"vxlan"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range back.VXLAN.Ratios {
		if r.Name == "d/c" && r.Streams == 1 && r.Value > 0.985 && r.Value < 0.995 {
			found = true
		}
	}
	if !found {
		t.Errorf("no d/c ratio of 0.99 for 1 stream in %+v", back.VXLAN.Ratios)
	}
	b := back.VXLAN.Burst
	if b["n"] != 100.0 || b["failures"] != 2.0 || b["elapsed_ms"] != 1234.5 {
		t.Errorf("burst in JSON: %v", b)
	}

	var tbl bytes.Buffer
	if err := writeTable(&tbl, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(d) flatmesh VXLAN --direct-routing", "ratio d/c", "burst of attaches", "1234 ms", "2 failed"} {
		if !strings.Contains(tbl.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tbl.String())
		}
	}
}
