package main

import (
	"fmt"
	"io"
	"strings"
)

// ScaleReport is `make bench-scale`: one lab of many agent hosts on this
// machine with LAN gossip timing.
type ScaleReport struct {
	Hosts      int     `json:"hosts"`
	StartGapMs float64 `json:"start_gap_ms"` // agents started this far apart
	// AllSeeAllMs: from the first agent start until every host sees every
	// member alive; PerHostMs: when each host first did.
	AllSeeAllMs float64   `json:"all_see_all_ms"`
	PerHostMs   []float64 `json:"per_host_ms"`
	// Flaps counts, over StableWindowS after all saw all (one poll of
	// every host per second), the answers with fewer than all alive.
	Flaps         int     `json:"flaps"`
	StableWindowS float64 `json:"stable_window_s"`
	// StormCPUMs is each agent's CPU time (user+system, with the iptables
	// runs it waited for) from its start to the end of the stable window.
	StormCPUMs Spread `json:"storm_cpu_ms"`
	// JoinRoutes: a host's first container attached (its first block) ->
	// a route covering it on every other host, one sample per host.
	JoinRoutes *LatencyStats `json:"join_routes_ms"`
	// AttachAnswered: the same attaches, start -> the attach call answered
	// (it waits, bounded, until the peers' views agree: readiness).
	AttachAnswered *LatencyStats `json:"attach_answered_ms"`
	// FirstPingLost counts attaches whose first ping (one echo, 1 s, from
	// a container on another host sent as attach answered) got no reply.
	FirstPingLost int `json:"first_ping_lost"`
	// Idle agents over IdleWindowS: resident memory, CPU share of one core,
	// gossip bytes per second per host (eth0 sent, received).
	IdleWindowS  float64  `json:"idle_window_s"`
	RSSMB        Spread   `json:"rss_mb"`
	CPUPercent   Spread   `json:"cpu_percent"`
	TxBytesPerS  Spread   `json:"tx_bytes_per_s"`
	RxBytesPerS  Spread   `json:"rx_bytes_per_s"`
	KilledHost   string   `json:"killed_host"`
	WithdrawnMs  float64  `json:"withdrawn_ms"` // SIGKILL -> its routes gone on every other host
	LoadAverage1 float64  `json:"load_average_1"`
	Notes        []string `json:"notes,omitempty"`
}

// Spread is the median and maximum over hosts.
type Spread struct {
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

func newSpread(v []float64) Spread {
	s := Spread{Median: median(v)}
	for _, x := range v {
		s.Max = max(s.Max, x)
	}
	return s
}

func writeScale(tw io.Writer, s *ScaleReport) {
	fmt.Fprintf(tw, "Scale: %d agent hosts on one machine, LAN gossip timing, agents started %.0f ms apart (load average %.1f at the end)\n",
		s.Hosts, s.StartGapMs, s.LoadAverage1)
	fmt.Fprintf(tw, "  all see all alive\t%s\t\tfrom the first agent start; median host %s; %d flaps in the %.0f s after\n",
		ms(s.AllSeeAllMs), ms(median(s.PerHostMs)), s.Flaps, s.StableWindowS)
	fmt.Fprintf(tw, "  agent CPU in the join storm\tmedian %s\tmax %s\tper agent, from its start to the end of the stable window\n",
		ms(s.StormCPUMs.Median), ms(s.StormCPUMs.Max))
	if j := s.JoinRoutes; j != nil {
		fmt.Fprintf(tw, "  first block -> routes everywhere\tp50 %s\tp99 %s\t%d hosts, %d failed; first ping after attach lost %d times\n",
			ms(j.P50), ms(j.P99), j.N, j.Failures, s.FirstPingLost)
	}
	if a := s.AttachAnswered; a != nil {
		fmt.Fprintf(tw, "  first block: attach answered\tp50 %s\tp99 %s\tthe same attaches; readiness waits at most 1 s for the peers' views\n",
			ms(a.P50), ms(a.P99))
	}
	if s.KilledHost != "" {
		fmt.Fprintf(tw, "  SIGKILLed host's routes withdrawn\t%s\t\t%s, on every other host\n", ms(s.WithdrawnMs), s.KilledHost)
	}
	fmt.Fprintf(tw, "  idle agent RSS\tmedian %.1f MB\tmax %.1f MB\tover %.0f s\n", s.RSSMB.Median, s.RSSMB.Max, s.IdleWindowS)
	fmt.Fprintf(tw, "  idle agent CPU\tmedian %.2f%%\tmax %.2f%%\tof one core\n", s.CPUPercent.Median, s.CPUPercent.Max)
	fmt.Fprintf(tw, "  gossip per host\tsent %.0f B/s\treceived %.0f B/s\tmedians (max sent %.0f B/s)\n",
		s.TxBytesPerS.Median, s.RxBytesPerS.Median, s.TxBytesPerS.Max)
	if len(s.Notes) > 0 {
		fmt.Fprintf(tw, "  notes: %s\n", strings.Join(s.Notes, "; "))
	}
}
