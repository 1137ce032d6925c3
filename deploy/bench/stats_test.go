package main

import (
	"math"
	"slices"
	"testing"
)

func TestMedian(t *testing.T) {
	cases := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7, 7, 1, 9, 7}, 7},
	}
	for _, c := range cases {
		in := slices.Clone(c.in)
		if got := median(in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("median reordered its input: %v", in)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing must be NaN")
	}
}

func TestPercentile(t *testing.T) {
	var hundred []float64
	for i := 100; i >= 1; i-- { // 100..1: the order must not matter
		hundred = append(hundred, float64(i))
	}
	cases := []struct {
		xs   []float64
		p    float64
		want float64
	}{
		{hundred, 50, 50},
		{hundred, 99, 99},
		{hundred, 100, 100},
		{hundred, 1, 1},
		{[]float64{10, 20, 30}, 50, 20},
		{[]float64{10, 20, 30}, 99, 30},
		{[]float64{10, 20, 30}, 34, 20}, // rank ceil(1.02) = 2
		{[]float64{42}, 99, 42},
	}
	for _, c := range cases {
		if got := percentile(c.xs, c.p); got != c.want {
			t.Errorf("percentile(%d samples, %v) = %v, want %v", len(c.xs), c.p, got, c.want)
		}
	}
	for _, p := range []float64{0, -1, 101} {
		if !math.IsNaN(percentile(hundred, p)) {
			t.Errorf("percentile(p=%v) must be NaN", p)
		}
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of nothing must be NaN")
	}
}

func TestRatio(t *testing.T) {
	if v, ok := ratio(3, 4); !ok || v != 0.75 {
		t.Errorf("ratio(3, 4) = %v, %v", v, ok)
	}
	for _, c := range [][2]float64{{1, 0}, {1, -2}, {math.NaN(), 1}, {1, math.NaN()}} {
		if _, ok := ratio(c[0], c[1]); ok {
			t.Errorf("ratio(%v, %v) must not be ok", c[0], c[1])
		}
	}
}

func TestNewLatency(t *testing.T) {
	st := newLatency([]float64{5, 1, 3, 2, 4}, 2)
	if st.N != 5 || st.Failures != 2 || st.P50 != 3 || st.P99 != 5 || st.Min != 1 || st.Max != 5 {
		t.Fatalf("newLatency: %+v", *st)
	}
	if st := newLatency(nil, 3); st.N != 0 || st.Failures != 3 {
		t.Fatalf("newLatency(nil): %+v", *st)
	}
}
