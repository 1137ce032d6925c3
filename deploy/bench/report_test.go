package main

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func path(key, label string, rtt float64, gbps map[int][]float64) PathResult {
	p := PathResult{Key: key, Name: label, Label: label, RTT: newSeries([]float64{rtt})}
	for _, n := range []int{1, 2} {
		if g, ok := gbps[n]; ok {
			p.Throughput = append(p.Throughput, Throughput{Streams: n, Gbps: newSeries(g)})
		}
	}
	return p
}

func testSuite() *SuiteReport {
	s := &SuiteReport{
		Title: "VXLAN",
		Setup: []string{"(a) lab"},
		Paths: []PathResult{
			path("a", "flatmesh VXLAN", 0.05, map[int][]float64{1: {4.9, 5.0, 5.1}, 2: {6, 6.2, 5.8}}),
			path("b", "hand-built VXLAN", 0.04, map[int][]float64{1: {5.0, 5.0, 5.0}, 2: {6, 6, 6}}),
			path("c", "native routed", 0.03, map[int][]float64{1: {10, 10, 10}}), // 2 streams failed
		},
		Attach: newLatency([]float64{10, 12, 30}, 0),
		Join: &JoinStats{Includes: "x", RoutesEverywhere: 380, Propagation: 33,
			Samples: []JoinSample{{Host: "h3", RoutesEverywhere: 380}}},
	}
	s.computeRatios([][2]string{{"a", "b"}, {"a", "c"}}, []int{1, 2})
	return s
}

func TestComputeRatios(t *testing.T) {
	s := testSuite()
	want := map[string]float64{"a/b 1": 1.0, "a/b 2": 1.0, "a/c 1": 0.5}
	if len(s.Ratios) != len(want) {
		t.Fatalf("ratios %+v: a/c for 2 streams must be absent (c was not measured)", s.Ratios)
	}
	for _, r := range s.Ratios {
		key := r.Name + " " + string(rune('0'+r.Streams))
		if w, ok := want[key]; !ok || math.Abs(r.Value-w) > 1e-9 {
			t.Errorf("ratio %s = %v, want %v", key, r.Value, w)
		}
	}
}

func TestWriteTable(t *testing.T) {
	rep := &Report{Kernel: "6.1.0", CPUs: 2, Repeat: 3, DurationS: 3, Streams: []int{1, 2}, VXLAN: testSuite(),
		Incomplete: []string{"flat: lab fbf: boom"}}
	var b bytes.Buffer
	if err := writeTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	find := func(prefix string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		t.Fatalf("no line starting %q in:\n%s", prefix, out)
		return ""
	}
	head, a, c := find("  path"), find("  (a) flatmesh VXLAN"), find("  (c) native routed")
	rab, rac := find("  ratio a/b"), find("  ratio a/c")
	// The columns line up: each column starts at the same offset on every row.
	col1 := strings.Index(head, "1 stream")
	col2 := strings.Index(head, "2 streams")
	for _, l := range []string{a, c, rab, rac} {
		if l[col1-1] != ' ' || l[col1] == ' ' || l[col2-1] != ' ' || l[col2] == ' ' {
			t.Errorf("misaligned row %q (columns at %d and %d of %q)", l, col1, col2, head)
		}
	}
	for _, want := range []string{
		"5.00 Gbit/s", "6.00 Gbit/s", "10.00 Gbit/s", "0.050 ms",
		"p50 12.0 ms", "p99 30.0 ms", "380 ms", "33.0 ms", "NOT MEASURED: flat: lab fbf: boom",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(rab, "1.00") || !strings.Contains(rac, "0.50") || !strings.HasSuffix(strings.TrimRight(rac, " "), "-") {
		t.Errorf("ratio rows: %q / %q", rab, rac)
	}
	if f := strings.Fields(c); len(f) != 8 || f[5] != "-" || f[6] != "0.030" {
		t.Errorf("native 2 streams was not measured and must show '-': %q", c)
	}
	for _, l := range lines {
		if strings.HasSuffix(l, " ") {
			t.Errorf("trailing spaces: %q", l)
		}
	}
}

func TestReportJSON(t *testing.T) {
	rep := &Report{Kernel: "6.1.0", Streams: []int{1, 2}, VXLAN: testSuite()}
	var b bytes.Buffer
	if err := printReport(&b, rep, true); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("the JSON does not read back: %v\n%s", err, b.String())
	}
	if back.VXLAN == nil || len(back.VXLAN.Paths) != 3 || back.VXLAN.Paths[0].Throughput[0].Gbps.Median != 5.0 ||
		back.VXLAN.Attach.P99 != 30 || back.Flat != nil {
		t.Fatalf("round trip lost data: %+v", back.VXLAN)
	}
}

func TestParseFlags(t *testing.T) {
	var errs bytes.Buffer
	o, err := parseFlags(nil, &errs)
	if err != nil {
		t.Fatal(err)
	}
	if o.Repeat != 3 || o.durationSeconds() != 3 || len(o.Streams) != 2 || o.Joins != 3 || o.Attaches != 100 ||
		!strings.HasSuffix(o.Binary, "/bin/flatmesh") || !strings.HasPrefix(o.Binary, "/") {
		t.Fatalf("defaults: %+v", o)
	}
	o, err = parseFlags([]string{"--repeat", "5", "--duration", "2s", "--streams", "1,4", "--only", "flat", "--json"}, &errs)
	if err != nil || o.Repeat != 5 || o.Joins != 5 || o.durationSeconds() != 2 || o.Streams[1] != 4 || o.Only != "flat" || !o.JSON {
		t.Fatalf("flags: %+v %v", o, err)
	}
	o, err = parseFlags([]string{"--agent-args", " --masquerade=false  --mtu=1400 "}, &errs)
	if err != nil || strings.Join(o.AgentArgs, " ") != "--masquerade=false --mtu=1400" {
		t.Fatalf("--agent-args: %q %v", o.AgentArgs, err)
	}
	for _, bad := range [][]string{
		{"--repeat", "0"}, {"--duration", "1500ms"}, {"--agent-args", "--mtu 1400"}, {"--agent-args", "x=1"}, {"--only", "geneve"}, {"--streams", "1,x"}, {"--streams", "0"}, {"extra"},
	} {
		if _, err := parseFlags(bad, &errs); err == nil {
			t.Errorf("%v must be refused", bad)
		}
	}
}
