package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured; `--json` prints it as is.
type Report struct {
	Started    time.Time    `json:"started"`
	Kernel     string       `json:"kernel"`
	CPUs       int          `json:"cpus"`
	Repeat     int          `json:"repeat"`
	DurationS  int          `json:"duration_s"` // iperf3 -t per run
	Streams    []int        `json:"streams"`
	ElapsedS   float64      `json:"elapsed_s"`
	AgentArgs  []string     `json:"agent_args,omitempty"` // --agent-args: appended to every agent
	VXLAN      *SuiteReport `json:"vxlan,omitempty"`
	Flat       *SuiteReport `json:"flat,omitempty"`
	WireGuard  *SuiteReport `json:"wireguard,omitempty"`
	Docker     *SuiteReport `json:"docker,omitempty"` // docker_linux.go
	Scale      *ScaleReport `json:"scale,omitempty"`
	Incomplete []string     `json:"incomplete,omitempty"` // what could not be measured, and why
}

// SuiteReport is one data plane's figures.
type SuiteReport struct {
	Title      string           `json:"title"`
	Setup      []string         `json:"setup"` // how the paths were built
	Paths      []PathResult     `json:"paths"`
	Ratios     []Ratio          `json:"ratios"`
	CLI        *LatencyStats    `json:"cli_status_ms,omitempty"` // baseline: a `flatmesh status` call
	Attach     *LatencyStats    `json:"attach_ms,omitempty"`
	Detach     *LatencyStats    `json:"detach_ms,omitempty"`
	Burst      *BurstStats      `json:"burst,omitempty"`
	Join       *JoinStats       `json:"join,omitempty"`
	SwitchOver *SwitchOverStats `json:"switch_over,omitempty"`
	DockerRun  []DockerRunStats `json:"docker_run,omitempty"` // docker_linux.go
}

// PathResult is one data path's throughput (per stream count) and latency.
type PathResult struct {
	Key        string       `json:"key"`  // "a", "b", "c"
	Name       string       `json:"name"` // machine name, "flatmesh-vxlan"
	Label      string       `json:"label"`
	CPUOf      string       `json:"cpu_of,omitempty"` // whose CPU cores_per_gbps counts
	Throughput []Throughput `json:"throughput"`
	RTT        Series       `json:"rtt_ms"` // ping average per repetition
}

// Throughput is the runs of one stream count, in Gbit/s received.
type Throughput struct {
	Streams     int    `json:"streams"`
	Gbps        Series `json:"gbps"`
	Retransmits []int  `json:"retransmits"`
	// CoresPerGbps: CPU of the path's tunnel processes (cores busy) per
	// Gbit/s, when the path names them (benchPath.Procs).
	CoresPerGbps *Series `json:"cores_per_gbps,omitempty"`
}

// Series is samples in run order and their median.
type Series struct {
	Samples []float64 `json:"samples"`
	Median  float64   `json:"median"`
}

// Ratio is the median throughput of path Of over that of path To.
type Ratio struct {
	Name    string  `json:"name"` // "a/b"
	Streams int     `json:"streams"`
	Value   float64 `json:"value"`
}

// LatencyStats summarises timed operations, in milliseconds.
type LatencyStats struct {
	N        int     `json:"n"`
	Failures int     `json:"failures"`
	P50      float64 `json:"p50"`
	P99      float64 `json:"p99"`
	Min      float64 `json:"min"`
	Max      float64 `json:"max"`
	// Samples in the order they were taken.
	Samples []float64 `json:"samples"`
}

// JoinStats times new hosts joining a running cluster.
type JoinStats struct {
	Includes string       `json:"includes"`
	Samples  []JoinSample `json:"samples"`
	// Medians over the samples, ms from the new agent's start.
	RoutesEverywhere float64 `json:"routes_everywhere_ms"`
	Propagation      float64 `json:"propagation_ms"` // attach answered -> routes everywhere
}

// JoinSample is one join; times are ms from the new agent's start.
type JoinSample struct {
	Host             string  `json:"host"`
	Members          float64 `json:"members_ms"`  // it sees every member alive
	Attached         float64 `json:"attached_ms"` // its first container is attached
	RoutesEverywhere float64 `json:"routes_everywhere_ms"`
	NewHostRoutes    float64 `json:"new_host_routes_ms"` // it has routes to every other host's containers
}

// SwitchOverStats counts pings lost while flat-mode agents switch over.
type SwitchOverStats struct {
	IntervalMs int             `json:"interval_ms"`
	Tries      []SwitchOverTry `json:"tries"`
	MedianLost float64         `json:"median_lost"`
	MaxLost    int             `json:"max_lost"`
}

// SwitchOverTry is one host's switch-over.
type SwitchOverTry struct {
	Host       string  `json:"host"`
	Sent       int     `json:"sent"` // up to the last reply
	Lost       int     `json:"lost"`
	SwitchedMs float64 `json:"switched_ms"` // agent start -> address on the bridge
}

// median throughput of a path for a stream count (NaN when not measured).
func (p PathResult) median(streams int) float64 {
	for _, t := range p.Throughput {
		if t.Streams == streams && len(t.Gbps.Samples) > 0 {
			return t.Gbps.Median
		}
	}
	return math.NaN()
}

// computeRatios fills s.Ratios for each pair ("a/b") and stream count.
func (s *SuiteReport) computeRatios(pairs [][2]string, streams []int) {
	byKey := map[string]PathResult{}
	for _, p := range s.Paths {
		byKey[p.Key] = p
	}
	s.Ratios = nil
	for _, pr := range pairs {
		for _, n := range streams {
			if v, ok := ratio(byKey[pr[0]].median(n), byKey[pr[1]].median(n)); ok {
				s.Ratios = append(s.Ratios, Ratio{Name: pr[0] + "/" + pr[1], Streams: n, Value: v})
			}
		}
	}
}

// writeTable prints the report for people: one aligned table per suite.
func writeTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "flatmesh bench: kernel %s, %d CPUs, iperf3 %d s per run, %d repetitions interleaved, medians (took %.0f s)\n",
		r.Kernel, r.CPUs, r.DurationS, r.Repeat, r.ElapsedS)
	if len(r.AgentArgs) > 0 {
		fmt.Fprintf(tw, "every flatmesh agent ran with %s\n", strings.Join(r.AgentArgs, " "))
	}
	for _, s := range []*SuiteReport{r.VXLAN, r.Flat, r.WireGuard, r.Docker} {
		if s != nil {
			fmt.Fprintln(tw)
			writeSuite(tw, s, r.Streams)
		}
	}
	if r.Scale != nil {
		fmt.Fprintln(tw)
		writeScale(tw, r.Scale)
	}
	for _, why := range r.Incomplete {
		fmt.Fprintf(tw, "\nNOT MEASURED: %s\n", why)
	}
	return tw.Flush()
}

func writeSuite(tw io.Writer, s *SuiteReport, streams []int) {
	fmt.Fprintln(tw, s.Title)
	for _, line := range s.Setup {
		fmt.Fprintf(tw, "  %s\n", line)
	}
	if len(s.Paths) > 0 {
		writePaths(tw, s, streams)
	}
	writeExtras(tw, s)
}

func writePaths(tw io.Writer, s *SuiteReport, streams []int) {
	head := []string{"  path"}
	for _, n := range streams {
		head = append(head, streamsLabel(n))
	}
	fmt.Fprintln(tw, strings.Join(append(head, "rtt"), "\t"))
	for _, p := range s.Paths {
		row := []string{fmt.Sprintf("  (%s) %s", p.Key, p.Label)}
		for _, n := range streams {
			row = append(row, gbps(p.median(n)))
		}
		rtt := "-"
		if len(p.RTT.Samples) > 0 {
			rtt = fmt.Sprintf("%.3f ms", p.RTT.Median)
		}
		fmt.Fprintln(tw, strings.Join(append(row, rtt), "\t"))
	}
	for _, name := range ratioNames(s.Ratios) {
		row := []string{"  ratio " + name}
		for _, n := range streams {
			row = append(row, ratioCell(s.Ratios, name, n))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	writeCPU(tw, s, streams)
}

func writeExtras(tw io.Writer, s *SuiteReport) {
	writeDockerRuns(tw, s)
	if c := s.CLI; c != nil {
		fmt.Fprintf(tw, "  cli call baseline\tp50 %s\tp99 %s\t`flatmesh status`: CLI process start + socket round trip, part of every attach\n",
			ms(c.P50), ms(c.P99))
	}
	if a := s.Attach; a != nil {
		fmt.Fprintf(tw, "  attach latency\tp50 %s\tp99 %s\t%d attaches, max %s, %d failed\n",
			ms(a.P50), ms(a.P99), a.N, ms(a.Max), a.Failures)
	}
	if d := s.Detach; d != nil {
		fmt.Fprintf(tw, "  detach latency\tp50 %s\tp99 %s\t%d detaches, max %s, %d failed\n",
			ms(d.P50), ms(d.P99), d.N, ms(d.Max), d.Failures)
	}
	writeBurst(tw, s.Burst)
	if j := s.Join; j != nil && len(j.Samples) > 0 {
		fmt.Fprintf(tw, "  join -> routes everywhere\t%s\t\tmedian of %d joins (%s)\n",
			ms(j.RoutesEverywhere), len(j.Samples), joinList(j.Samples))
		fmt.Fprintf(tw, "  block -> routes everywhere\t%s\t\tmedian, from attach answered on the new host\n", ms(j.Propagation))
		fmt.Fprintf(tw, "  (join = %s)\n", j.Includes)
	}
	if so := s.SwitchOver; so != nil && len(so.Tries) > 0 {
		var parts []string
		for _, t := range so.Tries {
			parts = append(parts, fmt.Sprintf("%s %d/%d lost, switched in %s", t.Host, t.Lost, t.Sent, ms(t.SwitchedMs)))
		}
		fmt.Fprintf(tw, "  pings lost in switch-over\tmedian %g\tmax %d\tping every %d ms: %s\n",
			so.MedianLost, so.MaxLost, so.IntervalMs, strings.Join(parts, "; "))
	}
}

func joinList(ss []JoinSample) string {
	var parts []string
	for _, j := range ss {
		parts = append(parts, fmt.Sprintf("%s %s", j.Host, ms(j.RoutesEverywhere)))
	}
	return strings.Join(parts, ", ")
}

// ratioNames lists the ratio names in first-seen order.
func ratioNames(rs []Ratio) []string {
	var names []string
	for _, r := range rs {
		if !slices.Contains(names, r.Name) {
			names = append(names, r.Name)
		}
	}
	return names
}

func ratioCell(rs []Ratio, name string, streams int) string {
	for _, r := range rs {
		if r.Name == name && r.Streams == streams {
			return strconv.FormatFloat(r.Value, 'f', 2, 64)
		}
	}
	return "-"
}

func streamsLabel(n int) string {
	if n == 1 {
		return "1 stream"
	}
	return fmt.Sprintf("%d streams", n)
}

func gbps(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2f Gbit/s", v)
}

func ms(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.1f ms", v)
}
