package main

import (
	"fmt"
	"io"
)

// BurstStats is n attaches fired at once (what `docker compose up --scale`
// does) through one agent: how many failed and how long until the last
// answered.
type BurstStats struct {
	N         int     `json:"n"`
	Failures  int     `json:"failures"`
	ElapsedMs float64 `json:"elapsed_ms"`
	// DetachElapsedMs is the same for detaching them all at once.
	DetachElapsedMs float64 `json:"detach_elapsed_ms"`
	DetachFailures  int     `json:"detach_failures"`
	FirstError      string  `json:"first_error,omitempty"`
}

// writeBurst prints the burst line of the table (nothing without one).
func writeBurst(tw io.Writer, b *BurstStats) {
	if b == nil {
		return
	}
	fmt.Fprintf(tw, "  burst of attaches\t%s\t\t%d attaches at once through one agent, %d failed; detaching them all at once %s, %d failed\n",
		ms(b.ElapsedMs), b.N, b.Failures, ms(b.DetachElapsedMs), b.DetachFailures)
}
