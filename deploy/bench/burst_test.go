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

func TestScaleTableAndJSON(t *testing.T) {
	s := &ScaleReport{Hosts: 50, StartGapMs: 100, AllSeeAllMs: 7700, PerHostMs: []float64{100, 7700, 300},
		JoinRoutes: newLatency([]float64{90, 110, 400}, 1), KilledHost: "h50", WithdrawnMs: 5200,
		RSSMB: newSpread([]float64{19, 21, 20}), TxBytesPerS: newSpread([]float64{300, 500})}
	var tbl bytes.Buffer
	if err := writeTable(&tbl, &Report{Scale: s}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Scale: 50 agent hosts", "7700 ms", "median host 300 ms", "p50 110 ms", "1 failed",
		"h50", "median 20.0 MB", "max 21.0 MB", "max sent 500 B/s"} {
		if !strings.Contains(tbl.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tbl.String())
		}
	}
	var js bytes.Buffer
	if err := printReport(&js, &Report{Scale: s}, true); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"all_see_all_ms": 7700`, `"join_routes_ms"`, `"withdrawn_ms": 5200`, `"rss_mb"`, `"tx_bytes_per_s"`} {
		if !strings.Contains(js.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}
