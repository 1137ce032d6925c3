package main

import (
	"fmt"
	"io"
	"strings"
)

// writeCPU prints, for paths that name their tunnel processes, the CPU
// those processes used per Gbit/s carried (median over the runs): cores
// busy / Gbit/s, both ends added.
func writeCPU(tw io.Writer, s *SuiteReport, streams []int) {
	for _, p := range s.Paths {
		row := []string{fmt.Sprintf("  cpu (%s) cores per Gbit/s", p.Key)}
		found := false
		for _, n := range streams {
			cell := "-"
			for _, t := range p.Throughput {
				if t.Streams == n && t.CoresPerGbps != nil && len(t.CoresPerGbps.Samples) > 0 {
					cell, found = fmt.Sprintf("%.3f", t.CoresPerGbps.Median), true
				}
			}
			row = append(row, cell)
		}
		if found {
			fmt.Fprintln(tw, strings.Join(append(row, p.CPUOf), "\t"))
		}
	}
}
