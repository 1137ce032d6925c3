package main

import "testing"

func TestParsePerfChildren(t *testing.T) {
	out := `# Children      Self  Symbol
# ........  ........  ......
#
    61.02%     0.00%  [k] do_idle
    12.50%     1.25%  [k] br_nf_pre_routing
     3.00%     3.00%  [.] iperf_send
     0.50%     0.50%  [k] br_nf_pre_routing
not a line 1% 2%
`
	m := parsePerfChildren(out)
	if got := m["br_nf_pre_routing"]; got != [2]float64{12.5, 1.25} {
		t.Errorf("br_nf_pre_routing = %v, want the first line's {12.5 1.25}", got)
	}
	if got := m["iperf_send"]; got != [2]float64{3, 3} {
		t.Errorf("iperf_send = %v", got)
	}
	if len(m) != 3 {
		t.Errorf("parsed %d symbols, want 3: %v", len(m), m)
	}
}
