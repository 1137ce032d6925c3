package agent

import (
	"strings"
	"testing"
)

func TestDNSSettings(t *testing.T) {
	base := []string{"--insecure", "--advertise", "192.0.2.1"}
	c, err := load(t, loadCase{args: base})
	if err != nil {
		t.Fatal(err)
	}
	if !c.DNS || c.DNSDomain != "flatmesh" || c.DNSResolvConf != "/etc/resolv.conf" {
		t.Errorf("defaults: dns=%v domain=%q resolv=%q", c.DNS, c.DNSDomain, c.DNSResolvConf)
	}
	c, err = load(t, loadCase{args: append(base, "--dns-domain", "Cluster.Local."), env: map[string]string{"FLATMESH_DNS_RESOLV_CONF": "/tmp/r.conf"}})
	if err != nil || c.DNSDomain != "cluster.local" || c.DNSResolvConf != "/tmp/r.conf" {
		t.Errorf("domain %q resolv %q err %v", c.DNSDomain, c.DNSResolvConf, err)
	}
	c, err = load(t, loadCase{args: base, hcl: "dns = false\ndns_domain = \"\"\n"})
	if err != nil || c.DNS {
		t.Errorf("dns = false in HCL: dns=%v err=%v (an empty domain is fine when DNS is off)", c.DNS, err)
	}
	for _, bad := range [][]string{{"--dns-domain", ""}, {"--dns-domain", "bad domain"}, {"--dns-resolv-conf", "resolv.conf"}} {
		_, err := load(t, loadCase{args: append(append([]string(nil), base...), bad...)})
		if err == nil || !strings.Contains(err.Error(), strings.ReplaceAll(strings.TrimPrefix(bad[0], "--"), "-", "_")) {
			t.Errorf("%v: err %v, want one naming the setting", bad, err)
		}
	}
}
