package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture flatmesh builds for).
const userHZ = 100

// procCPU is the user + system CPU time, in seconds, that the processes
// (all their threads) have used so far.
func procCPU(pids []int) (float64, error) {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("reading the cpu time of pid %d: %w", pid, err)
		}
		// The command name (field 2) may hold spaces: count from its ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 13 {
			return 0, fmt.Errorf("pid %d: short stat line", pid)
		}
		for _, f := range fields[11:13] { // utime, stime (fields 14, 15)
			v, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("pid %d: stat: %w", pid, err)
			}
			ticks += v
		}
	}
	return float64(ticks) / userHZ, nil
}

// procCPUNow reads the processes' CPU time and the wall clock (nothing
// when there are no processes).
func procCPUNow(pids []int) (float64, time.Time, error) {
	if len(pids) == 0 {
		return 0, time.Time{}, nil
	}
	c, err := procCPU(pids)
	return c, time.Now(), err
}

// coresSince is the number of cores the processes kept busy since
// procCPUNow returned cpu0 at t0; false when there is nothing to report.
func coresSince(pids []int, cpu0 float64, t0 time.Time, err error) (float64, bool) {
	if len(pids) == 0 || err != nil {
		return 0, false
	}
	c, err := procCPU(pids)
	if err != nil {
		return 0, false
	}
	return (c - cpu0) / time.Since(t0).Seconds(), true
}
