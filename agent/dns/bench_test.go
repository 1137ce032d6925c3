package dns

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// The DNS benchmark runs the server and a fake upstream each in its own
// process with GOMAXPROCS=1 (one core each), and the load generator here:
//
//	go test -run XXX -bench DNSServer -benchtime 100000x ./agent/dns/
//
// cluster: names from the record table; forward: names the server sends
// to the upstream; upstream: the same queries sent to the upstream
// directly, its own latency. c1 is one query at a time (latency), c8 and
// c32 keep 8 and 32 in flight (throughput). The summary line gives the
// forwarding overhead (forward minus upstream, c1) measured side by side.
// Every forwarded query uses a fresh socket (a random source port, as a
// resolver should), which is what bounds the forwarded rate. The
// server runs without the per-source rate limit: the load comes from one
// address, which the agent's default limit would throttle.

const benchRoleEnv = "FLATMESH_DNS_BENCH_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(benchRoleEnv) {
	case "upstream":
		benchChild(func() (string, func()) {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				panic(err)
			}
			s := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
				m := new(mdns.Msg).SetReply(r)
				m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)})
				_ = w.WriteMsg(m)
			})}
			go func() { _ = s.ActivateAndServe() }()
			return pc.LocalAddr().String(), func() { _ = s.Shutdown() }
		})
	case "server":
		benchChild(func() (string, func()) {
			up := netip.MustParseAddrPort(os.Getenv("FLATMESH_DNS_BENCH_UPSTREAM"))
			h := NewHandler(HandlerOptions{Forwarder: NewForwarder(ForwarderOptions{Static: []netip.AddrPort{up}}), Rate: -1})
			h.SetTable(NewTable("flatmesh", space, benchRecords(1000)))
			h.SetAllowed(loopback)
			s := NewServer(ServerOptions{Handler: h})
			if err := s.SetAddrs([]netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
				panic(err)
			}
			return s.Addrs()[0].String(), s.Close
		})
	default:
		code := m.Run()
		printBenchSummary()
		os.Exit(code)
	}
}

func benchRecords(n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{Name: fmt.Sprintf("c%d", i), Addr: netip.AddrFrom4([4]byte{10, 213, byte(i / 250), byte(i%250 + 2)})}
	}
	return out
}

// benchChild serves until stdin closes, after printing its address.
func benchChild(start func() (string, func())) {
	addr, stop := start()
	fmt.Printf("ADDR %s\n", addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
	stop()
	os.Exit(0)
}

type benchProc struct {
	addr  string
	stdin io.WriteCloser
	cmd   *exec.Cmd
}

func startBenchProc(b *testing.B, role string, env ...string) *benchProc {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), benchRoleEnv+"="+role, "GOMAXPROCS=1"), env...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b.Fatalf("%s process: %q %v", role, line, err)
	}
	return &benchProc{addr: strings.TrimSpace(strings.TrimPrefix(line, "ADDR ")), stdin: stdin, cmd: cmd}
}

func (p *benchProc) stop() {
	p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// benchResult is one load run.
type benchResult struct {
	n, lost  int
	took     time.Duration
	p50, p99 time.Duration
}

func (r benchResult) qps() float64 { return float64(r.n) / r.took.Seconds() }

var (
	benchMu      sync.Mutex
	benchResults = map[string]benchResult{}
	benchOrder   []string
)

// load sends n queries (names cycled) to addr from workers goroutines,
// each with its own socket and one query in flight.
func load(addr string, names []string, workers, n int) (benchResult, error) {
	var qs [][]byte
	for i, name := range names {
		m := new(mdns.Msg).SetQuestion(name, mdns.TypeA)
		m.Id = uint16(i)
		b, err := m.Pack()
		if err != nil {
			return benchResult{}, err
		}
		qs = append(qs, b)
	}
	lat := make([][]time.Duration, workers)
	lost := make([]int, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c, err := net.Dial("udp", addr)
			if err != nil {
				errs[w] = err
				return
			}
			defer c.Close()
			buf := make([]byte, 1500)
			for i := w; i < n; i += workers {
				q := qs[i%len(qs)]
				t0 := time.Now()
				if _, err := c.Write(q); err != nil {
					errs[w] = err
					return
				}
				_ = c.SetReadDeadline(t0.Add(time.Second))
				for {
					k, err := c.Read(buf)
					if err != nil {
						lost[w]++
						break
					}
					if k >= 12 && buf[0] == q[0] && buf[1] == q[1] {
						if buf[3]&0xF != 0 {
							errs[w] = fmt.Errorf("rcode %d", buf[3]&0xF)
							return
						}
						lat[w] = append(lat[w], time.Since(t0))
						break
					}
				}
			}
		}(w)
	}
	wg.Wait()
	r := benchResult{took: time.Since(start)}
	var all []time.Duration
	for w := range lat {
		if errs[w] != nil {
			return r, errs[w]
		}
		all = append(all, lat[w]...)
		r.lost += lost[w]
	}
	r.n = len(all)
	if r.n == 0 {
		return r, fmt.Errorf("no answers")
	}
	slices.Sort(all)
	r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	return r, nil
}

func BenchmarkDNSServer(b *testing.B) {
	up := startBenchProc(b, "upstream")
	defer up.stop()
	srv := startBenchProc(b, "server", "FLATMESH_DNS_BENCH_UPSTREAM="+up.addr)
	defer srv.stop()
	cluster := make([]string, 100)
	forward := make([]string, 100)
	for i := range cluster {
		cluster[i] = fmt.Sprintf("c%d.flatmesh.", i*10)
		forward[i] = fmt.Sprintf("host%d.example.", i)
	}
	runs := []struct {
		name    string
		addr    string
		names   []string
		workers int
	}{
		{"cluster/c1", srv.addr, cluster, 1},
		{"forward/c1", srv.addr, forward, 1},
		{"upstream/c1", up.addr, forward, 1},
		{"cluster/c8", srv.addr, cluster, 8},
		{"forward/c8", srv.addr, forward, 8},
		{"upstream/c8", up.addr, forward, 8},
		{"cluster/c32", srv.addr, cluster, 32},
		{"forward/c32", srv.addr, forward, 32},
		{"upstream/c32", up.addr, forward, 32},
	}
	for _, run := range runs {
		b.Run(run.name, func(b *testing.B) {
			r, err := load(run.addr, run.names, run.workers, max(b.N, run.workers))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(r.qps(), "qps")
			b.ReportMetric(float64(r.p50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(r.p99.Microseconds()), "p99-µs")
			b.ReportMetric(float64(r.lost), "lost")
			benchMu.Lock()
			if _, ok := benchResults[run.name]; !ok {
				benchOrder = append(benchOrder, run.name)
			}
			benchResults[run.name] = r
			benchMu.Unlock()
		})
	}
}

// printBenchSummary prints the figures of the last (largest) run of each
// case and the forwarding overhead, when the benchmark ran.
func printBenchSummary() {
	benchMu.Lock()
	defer benchMu.Unlock()
	if len(benchOrder) == 0 {
		return
	}
	fmt.Printf("\ncluster DNS, server and upstream on one core each (GOMAXPROCS=1), load generator on %d CPUs:\n", runtime.NumCPU())
	for _, name := range benchOrder {
		r := benchResults[name]
		fmt.Printf("  %-13s %8d queries %9.0f qps  p50 %6s  p99 %6s  lost %d\n", name, r.n, r.qps(), r.p50, r.p99, r.lost)
	}
	f, u := benchResults["forward/c1"], benchResults["upstream/c1"]
	if f.n > 0 && u.n > 0 {
		fmt.Printf("  forwarding overhead (c1): p50 +%s, p99 +%s over the upstream's own latency\n", f.p50-u.p50, f.p99-u.p99)
	}
}
