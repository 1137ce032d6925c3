package agent

import (
	"testing"
	"time"
)

func TestSettleGate(t *testing.T) {
	g := &settleGate{settle: 50 * time.Millisecond, recheck: time.Hour}
	t0 := time.Now()
	woke := make(chan struct{}, 4)
	wake := func() { woke <- struct{}{} }
	if !g.due("a", t0, wake) {
		t.Fatal("first write not due")
	}
	g.written("a", t0)
	if g.due("a", t0.Add(time.Minute), wake) {
		t.Error("unchanged key due before the recheck interval")
	}
	if !g.due("a", t0.Add(2*time.Hour), wake) {
		t.Error("unchanged key not due after the recheck interval")
	}
	// A burst of changes inside the settle period: none due, one wake.
	for i, k := range []string{"b", "c", "d"} {
		if g.due(k, t0.Add(time.Duration(i)*time.Millisecond), wake) {
			t.Errorf("change %s due inside the settle period", k)
		}
	}
	select {
	case <-woke:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake after the settle period")
	}
	select {
	case <-woke:
		t.Fatal("woken twice for one burst")
	case <-time.After(100 * time.Millisecond):
	}
	if !g.due("d", t0.Add(60*time.Millisecond), wake) {
		t.Error("change not due after the settle period")
	}
	g.written("d", t0.Add(60*time.Millisecond))
	if g.due("a", t0.Add(70*time.Millisecond), nil) {
		t.Error("change due 10 ms after a write")
	}
}
