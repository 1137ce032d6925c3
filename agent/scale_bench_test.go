package agent

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/ipam"
)

// BenchmarkBlockPhase is the block phase of the scale lab in one process:
// n agents (real memberlist on loopback, local timing, real allocators,
// their reconcile and metadata loops; the data plane only records passes)
// each attach one container in turn, waiting until every host's view of
// block ownership agrees. It reports the reconcile passes per host per new
// block and the process's CPU per host per block, for the trigger of old
// (every member change pokes a pass: "poke") and the one in use (changes of
// the IPAM digests alone wake no pass: "filtered"), side by side.
func BenchmarkBlockPhase(b *testing.B) {
	for _, n := range []int{8, 16, 24} {
		for _, trig := range []struct {
			name string
			f    func(*Agent)
		}{{"poke", (*Agent).poke}, {"filtered", (*Agent).membersChanged}} {
			b.Run(fmt.Sprintf("hosts=%d/trigger=%s", n, trig.name), func(b *testing.B) {
				var passes, cpu float64
				for i := 0; i < b.N; i++ {
					p, c := blockPhase(b, n, trig.f)
					passes += p
					cpu += c
				}
				b.ReportMetric(passes/float64(b.N), "passes/host/block")
				b.ReportMetric(cpu/float64(b.N), "cpu-ms/host/block")
			})
		}
	}
}

// blockPhase runs one block phase and returns passes and CPU milliseconds
// per host per block.
func blockPhase(b *testing.B, n int, onChange func(*Agent)) (float64, float64) {
	b.StopTimer()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = newTestNodeWith(b, fmt.Sprintf("h%d", i+1), i+1, i == 0, overlayCaps, onChange)
		a := nodes[i].a
		a.clRef.Store(a.cl)
		a.loopRunning.Store(true)
		close(a.joined)
		wg.Add(2)
		go func() { defer wg.Done(); a.reconcileLoop(ctx) }()
		go func() { defer wg.Done(); a.metaLoop(ctx) }()
	}
	for _, nd := range nodes[1:] {
		if _, err := nd.a.cl.Join([]string{nodes[0].addr()}); err != nil {
			b.Fatal(err)
		}
	}
	waitWithin(b, 30*time.Second, "all see all", func() bool {
		for _, nd := range nodes {
			if len(nd.a.cl.AlivePeers()) != n {
				return false
			}
		}
		return true
	})
	time.Sleep(500 * time.Millisecond) // let the join's passes end
	before := make([]int, n)
	for i, nd := range nodes {
		before[i] = len(nd.plane.lastViews())
	}
	cpu0 := cpuMillis()
	b.StartTimer()
	for i, nd := range nodes {
		actx, acancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := nd.a.ipam.Allocate(actx, ipam.Request{ID: fmt.Sprintf("c%d", i), IfName: "eth0"})
		acancel()
		if err != nil {
			b.Fatal(err)
		}
		waitWithin(b, 30*time.Second, "views agree", func() bool { return agree(nodes) })
	}
	time.Sleep(300 * time.Millisecond) // the last block's passes
	b.StopTimer()
	cpu := cpuMillis() - cpu0
	total := 0
	for i, nd := range nodes {
		total += len(nd.plane.lastViews()) - before[i]
	}
	blocks := float64(n * n)
	return float64(total) / blocks, cpu / blocks
}

// agree: every host has the same ownership digest and gossips it.
func agree(nodes []*testNode) bool {
	want := nodes[0].a.ipam.DigestValue()
	for _, nd := range nodes {
		if nd.a.ipam.DigestValue() != want || !nd.a.peersAgree() {
			return false
		}
	}
	return true
}

func waitWithin(b testing.TB, wait time.Duration, what string, ok func() bool) {
	b.Helper()
	for end := time.Now().Add(wait); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			b.Fatalf("%s: not within %s", what, wait)
		}
	}
}

// cpuMillis is the process's user+system CPU time.
func cpuMillis() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
}
