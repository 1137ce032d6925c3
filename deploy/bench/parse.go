package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// iperfResult is what one iperf3 client run measured.
type iperfResult struct {
	Gbps        float64 // received by the server, Gbit/s
	SentGbps    float64 // sent by the client, Gbit/s
	Retransmits int
	CPUHost     float64 // client's CPU use, percent (of one core x cores)
	CPURemote   float64 // server's
}

// iperfJSON is the part of `iperf3 -J` output we read.
type iperfJSON struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int     `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		CPU struct {
			HostTotal   float64 `json:"host_total"`
			RemoteTotal float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
	} `json:"end"`
}

// parseIperf reads `iperf3 -c ... -J` output (any -P: the sums cover every
// stream). An error reported by iperf3 itself, or a run that received
// nothing, is an error.
func parseIperf(out []byte) (iperfResult, error) {
	var j iperfJSON
	if err := json.Unmarshal(out, &j); err != nil {
		return iperfResult{}, fmt.Errorf("decoding iperf3 json: %w", err)
	}
	if j.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", j.Error)
	}
	r := iperfResult{
		Gbps:        j.End.SumReceived.BitsPerSecond / 1e9,
		SentGbps:    j.End.SumSent.BitsPerSecond / 1e9,
		Retransmits: j.End.SumSent.Retransmits,
		CPUHost:     j.End.CPU.HostTotal,
		CPURemote:   j.End.CPU.RemoteTotal,
	}
	if r.Gbps <= 0 {
		return r, errors.New("iperf3: the server received nothing")
	}
	return r, nil
}

var (
	pingCountRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	pingRTTRE   = regexp.MustCompile(`= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms`)
	pingSeqRE   = regexp.MustCompile(`icmp_seq=(\d+)`)
)

// pingSummary is the last lines of iputils ping.
type pingSummary struct {
	Sent, Received int
	AvgMs          float64 // NaN-free: 0 when nothing came back
}

// parsePingSummary reads "N packets transmitted, M received" and the
// "rtt min/avg/max/mdev = a/b/c/d ms" line.
func parsePingSummary(out string) (pingSummary, error) {
	m := pingCountRE.FindStringSubmatch(out)
	if m == nil {
		return pingSummary{}, fmt.Errorf("no ping summary in %q", lastLine(out))
	}
	var s pingSummary
	s.Sent, _ = strconv.Atoi(m[1])
	s.Received, _ = strconv.Atoi(m[2])
	if r := pingRTTRE.FindStringSubmatch(out); r != nil {
		s.AvgMs, _ = strconv.ParseFloat(r[2], 64)
	}
	return s, nil
}

// replySeq returns the icmp_seq of a ping reply line ("64 bytes from ...:
// icmp_seq=7 ttl=64 time=0.05 ms"); ok is false for other lines and for
// duplicates.
func replySeq(line string) (int, bool) {
	if !strings.Contains(line, " bytes from ") || strings.Contains(line, "DUP!") {
		return 0, false
	}
	m := pingSeqRE.FindStringSubmatch(line)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// pingLosses counts the echo requests lost among those sent up to the last
// answered one: sequence numbers 1..maxSeq without a reply. Requests sent
// after the last reply are still in flight when ping is stopped and do not
// count; callers make sure a reply came after the event they measure.
func pingLosses(replied map[int]bool) (sent, lost int) {
	maxSeq := 0
	for s := range replied {
		maxSeq = max(maxSeq, s)
	}
	for s := 1; s <= maxSeq; s++ {
		if !replied[s] {
			lost++
		}
	}
	return maxSeq, lost
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// parseEthtoolFeature reads "name: on" (or "off", with an optional
// " [fixed]") from `ethtool -k` output.
func parseEthtoolFeature(out, name string) (on, ok bool) {
	for _, line := range strings.Split(out, "\n") {
		k, v, found := strings.Cut(strings.TrimSpace(line), ":")
		if !found || k != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return false, false
		}
		return f[0] == "on", f[0] == "on" || f[0] == "off"
	}
	return false, false
}

// routeDsts reads the destinations of `ip route show` lines ("10.213.0.0/26
// via ...", "10.213.0.7 dev ..." for a host route). Default routes are left
// out: the bench looks for routes to particular blocks.
func routeDsts(out string) []netip.Prefix {
	var dsts []netip.Prefix
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		d := f[0]
		if p, err := netip.ParsePrefix(d); err == nil {
			dsts = append(dsts, p.Masked())
		} else if a, err := netip.ParseAddr(d); err == nil {
			dsts = append(dsts, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return dsts
}

// covered reports whether a prefix of dsts holds a.
func covered(dsts []netip.Prefix, a netip.Addr) bool {
	for _, p := range dsts {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// renameLinks rewrites link names in iptables-save output ("-i flatmesh0"
// and "-o flatmesh0", negated or not) by rename; chain names, comments and
// everything else stay as they are.
func renameLinks(rules string, rename map[string]string) string {
	lines := strings.Split(rules, "\n")
	for i, line := range lines {
		f := strings.Split(line, " ")
		for j := 1; j < len(f); j++ {
			if to, ok := rename[f[j]]; ok && (f[j-1] == "-i" || f[j-1] == "-o") {
				f[j] = to
			}
		}
		lines[i] = strings.Join(f, " ")
	}
	return strings.Join(lines, "\n")
}
