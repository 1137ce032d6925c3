package agent

import "testing"

func TestTxChecksumOffload(t *testing.T) {
	cases := []struct {
		setting, release string
		want             bool
	}{
		{"on", "4.19.0", true},
		{"off", "6.18.44", false},
		{"auto", "6.18.44-fc-v782", true},
		{"auto", "5.7.0", true},
		{"auto", "5.6.19-generic", false},
		{"auto", "4.19.0-26-amd64", false},
		{"auto", "garbage", false},
		{"auto", "5.10rc1", true},
	}
	for _, c := range cases {
		if got, why := txChecksumOffload(c.setting, c.release); got != c.want {
			t.Errorf("txChecksumOffload(%q, %q) = %v (%s), want %v", c.setting, c.release, got, why, c.want)
		}
	}
}
