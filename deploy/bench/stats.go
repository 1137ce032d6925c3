package main

import (
	"math"
	"slices"
)

// median is the middle of xs (the mean of the two middle values for an even
// count); NaN for none. xs is not modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of xs: the
// smallest value with at least p% of the samples at or below it (p99 of 100
// samples is the 99th smallest). NaN for none. xs is not modified.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 || p <= 0 || p > 100 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// ratio is a/b; ok is false when either is missing (NaN) or b is not
// positive, so a failed measurement never shows as a ratio.
func ratio(a, b float64) (float64, bool) {
	if math.IsNaN(a) || math.IsNaN(b) || b <= 0 {
		return 0, false
	}
	return a / b, true
}

// newSeries keeps the samples and their median.
func newSeries(samples []float64) Series {
	s := Series{Samples: slices.Clone(samples)}
	if len(samples) > 0 {
		s.Median = median(samples)
	}
	return s
}

// newLatency summarises durations in milliseconds.
func newLatency(ms []float64, failures int) *LatencyStats {
	st := &LatencyStats{N: len(ms), Failures: failures, Samples: slices.Clone(ms)}
	if len(ms) == 0 {
		return st
	}
	st.P50 = percentile(ms, 50)
	st.P99 = percentile(ms, 99)
	st.Min = slices.Min(ms)
	st.Max = slices.Max(ms)
	return st
}
