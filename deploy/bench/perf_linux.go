package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// --perf DIR: after a suite's measured runs, one more iperf3 run per path
// (the largest stream count) under a whole-machine call-graph profile
// (perf record -a -g), so the kernel functions that make two paths differ
// can be compared. Each path leaves DIR/<suite>-<key>.data (for perf
// report) and DIR/<suite>-<key>.txt: the run's Gbit/s and, for the kernel
// functions that tell the data paths apart (bridge netfilter, conntrack,
// NAT, iptables, GRO/GSO, the devices), the share of all samples spent in
// them and below them (perf's "children" figure). The profile is of the
// whole machine: other programs running at the time are in it too.

// perfBinary is Debian's perf (linux-perf).
const perfBinary = "/usr/bin/perf"

// perfSymbols are the functions whose inclusive share the summary lists.
var perfSymbols = []string{
	"br_handle_frame", "br_nf_pre_routing", "br_nf_forward_ip", "br_nf_post_routing", "br_forward",
	"nf_hook_slow", "nft_do_chain", "nft_do_chain_ipv4", "nft_do_chain_inet", "ipt_do_table", "nf_conntrack_in", "nf_nat_inet_fn", "nf_nat_ipv4_fn",
	"nf_ct_get_tuple", "nf_conntrack_tcp_packet", "nft_match_eval", "nft_target_eval_xt", "physdev_mt", "skb_ext_add",
	"ip_forward", "ip_rcv", "ip_output", "ip_finish_output2", "__dev_queue_xmit", "veth_xmit",
	"macvlan_start_xmit", "macvlan_handle_frame", "vxlan_xmit", "vxlan_rcv", "udp_tunnel_xmit_skb",
	"napi_gro_receive", "dev_gro_receive", "skb_segment", "__skb_gso_segment", "tcp_gso_segment",
	"tcp_sendmsg", "tcp_v4_rcv", "tcp_recvmsg", "copy_user_enhanced_fast_string", "_copy_to_iter",
	"_copy_from_iter", "__netif_receive_skb_core", "do_idle",
}

// profilePaths runs one profiled iperf3 run of every path.
func (e *env) profilePaths(ctx context.Context, suite string, paths []benchPath) error {
	if e.o.PerfDir == "" {
		return nil
	}
	if err := os.MkdirAll(e.o.PerfDir, 0o755); err != nil {
		return fmt.Errorf("perf dir: %w", err)
	}
	streams := slices.Max(e.o.Streams)
	for _, p := range paths {
		base := filepath.Join(e.o.PerfDir, suite+"-"+p.Key)
		gbps, err := e.profiledIperf(ctx, p, streams, base+".data")
		if err != nil {
			return err
		}
		sum, err := perfSummary(ctx, base+".data")
		if err != nil {
			return err
		}
		head := fmt.Sprintf("(%s) %s, %s: %.2f Gbit/s under perf record -a -g\n", p.Key, p.Label, streamsLabel(streams), gbps)
		if err := os.WriteFile(base+".txt", []byte(head+sum), 0o644); err != nil {
			return err
		}
		e.say("%s perf   (%s) %-24s %.2f Gbit/s, profile %s", suite, p.Key, p.Label, gbps, base+".txt")
	}
	return nil
}

// profiledIperf runs perf record for the length of one iperf3 run.
func (e *env) profiledIperf(ctx context.Context, p benchPath, streams int, out string) (float64, error) {
	cmd := exec.CommandContext(ctx, perfBinary, "record", "-a", "-g", "-F", "999", "-q", "-o", out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting perf: %w", err)
	}
	time.Sleep(300 * time.Millisecond) // perf opens its events
	r, err := e.iperf(ctx, p, streams)
	_ = cmd.Process.Signal(syscall.SIGINT)
	werr := cmd.Wait()
	if err != nil {
		return 0, err
	}
	if werr != nil && ctx.Err() == nil {
		if _, serr := os.Stat(out); serr != nil {
			return 0, fmt.Errorf("perf record: %w", werr)
		}
	}
	return r.Gbps, nil
}

// perfSummary lists the inclusive share of perfSymbols in a profile.
func perfSummary(ctx context.Context, data string) (string, error) {
	out, err := command(ctx, perfBinary, "report", "-i", data, "--children", "--sort", "sym", "--stdio",
		"-g", "none", "--percent-limit", "0.01")
	if err != nil {
		return "", fmt.Errorf("perf report %s: %w", data, err)
	}
	share := parsePerfChildren(string(out))
	var b strings.Builder
	b.WriteString("children%  self%  symbol\n")
	for _, s := range perfSymbols {
		if v, ok := share[s]; ok {
			fmt.Fprintf(&b, "%8.2f %6.2f  %s\n", v[0], v[1], s)
		}
	}
	return b.String(), nil
}

// parsePerfChildren reads `perf report --children --sort sym -g none`
// lines ("  12.34%   1.23%  [k] name") into name -> {children, self}.
func parsePerfChildren(out string) map[string][2]float64 {
	m := map[string][2]float64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasSuffix(f[0], "%") || !strings.HasSuffix(f[1], "%") || !strings.HasPrefix(f[2], "[") {
			continue
		}
		c, err1 := strconv.ParseFloat(strings.TrimSuffix(f[0], "%"), 64)
		s, err2 := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		name := f[3]
		if _, seen := m[name]; !seen {
			m[name] = [2]float64{c, s}
		}
	}
	return m
}
