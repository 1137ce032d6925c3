package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// containersOf returns host's attachments as its agent lists them.
func containersOf(t *testing.T, l *lab.Lab, host string) []api.Attachment {
	t.Helper()
	out, err := l.CLI(host, "containers", "--json")
	if err != nil {
		t.Fatalf("containers on %s: %v\n%s", host, err, out)
	}
	var list []api.Attachment
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("containers --json on %s: %v\n%s", host, err, out)
	}
	return list
}

// noDuplicates fails when two containers anywhere hold the same address.
func noDuplicates(t *testing.T, l *lab.Lab, hosts []string) int {
	t.Helper()
	seen := map[string]string{}
	n := 0
	for _, h := range hosts {
		for _, c := range containersOf(t, l, h) {
			if prev, dup := seen[c.IP]; dup {
				t.Fatalf("DUPLICATE address %s: %s and %s/%s", c.IP, prev, h, c.Name)
			}
			seen[c.IP] = h + "/" + c.Name
			n++
		}
	}
	return n
}

func ipamCheck(l *lab.Lab, host string) (api.IPAMCheck, error) {
	out, err := l.CLI(host, "ipam", "check", "--json")
	var chk api.IPAMCheck
	if jerr := json.Unmarshal(out, &chk); jerr != nil {
		return chk, fmt.Errorf("ipam check on %s: %v %v\n%s", host, err, jerr, out)
	}
	if err != nil && chk.OK {
		return chk, fmt.Errorf("ipam check on %s exited non-zero but said ok: %v", host, err)
	}
	return chk, nil
}

// TestRootIPAMPartition: 5 agents allocate; one host is cut off and both
// sides keep allocating; after healing, every view agrees, `ipam check`
// passes everywhere and no address is held twice. A killed and restarted
// agent keeps its allocations.
func TestRootIPAMPartition(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 5, ContainersPerHost: 1})
	hosts := hostNames(l)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, h := range hosts {
		if _, err := l.AddContainer(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	noDuplicates(t, l, hosts)

	h5, _ := l.Host("h5")
	kerneltest.Run(t, "ip", "-n", h5.Netns, "link", "set", "eth0", "down")
	t.Log("h5 cut off from the switch")
	for _, h := range []string{"h1", "h3", "h5"} {
		if _, err := l.AddContainer(ctx, h); err != nil {
			t.Fatalf("allocating on %s during the partition: %v", h, err)
		}
	}
	// Outlast memberlist's memory of the dead (5 s in the lab's timing), so
	// healing needs the reconnector, as a real partition would.
	kerneltest.Eventually(t, 30*time.Second, "h1 to mark h5 failed", func() bool {
		return peerStates(t, l, "h1")["h5"] == "failed"
	})
	time.Sleep(6 * time.Second)
	noDuplicates(t, l, hosts)
	kerneltest.Run(t, "ip", "-n", h5.Netns, "link", "set", "eth0", "up")
	t.Log("partition healed")
	if err := l.WaitAlive(ctx, 5); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	kerneltest.Eventually(t, 60*time.Second, "ipam check to pass on every host", func() bool {
		for _, h := range hosts {
			chk, err := ipamCheck(l, h)
			if err != nil || !chk.OK || len(chk.Peers) != len(hosts)-1 {
				return false
			}
		}
		return true
	})
	t.Logf("FIGURE: views agreed %s after the partition healed", time.Since(start).Round(time.Millisecond))
	n := noDuplicates(t, l, hosts)
	t.Logf("%d containers on 5 hosts, no duplicate address", n)

	before := containersOf(t, l, "h2")
	if err := l.StopAgent("h2", 9); err != nil {
		t.Fatal(err)
	}
	if err := l.StartAgent("h2"); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitReady(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	after := containersOf(t, l, "h2")
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("allocations changed across a restart:\nbefore %v\nafter  %v", before, after)
	}

	// rmpeer: refused for a live host; for a dead one it reclaims its blocks
	// and running it again changes nothing.
	if out, err := cli(l, "h1", "rmpeer", "h3"); err == nil || !strings.Contains(out, "alive") {
		t.Fatalf("rmpeer of a live host: err %v\n%s", err, out)
	}
	if err := l.StopAgent("h4", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitState(t, l, []string{"h1", "h2", "h3", "h5"}, "h4", "failed", 30*time.Second)
	out, err := cli(l, "h1", "rmpeer", "h4", "--json")
	if err != nil {
		t.Fatalf("rmpeer h4: %s", out)
	}
	t.Logf("rmpeer h4: %s", strings.TrimSpace(out))
	if out, err := cli(l, "h1", "rmpeer", "h4"); err != nil {
		t.Fatalf("rmpeer is not idempotent: %s", out)
	}
	kerneltest.Eventually(t, 30*time.Second, "every live host to agree after rmpeer", func() bool {
		for _, h := range []string{"h1", "h2", "h3", "h5"} {
			chk, err := ipamCheck(l, h)
			if err != nil || !chk.OK {
				return false
			}
		}
		return true
	})
	out, _ = cli(l, "h2", "ipam", "--json")
	var m api.IPAM
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("ipam --json: %v\n%s", err, out)
	}
	for _, b := range m.Blocks {
		if b.Owner == "h4" {
			t.Fatalf("block %s still owned by the removed h4", b.Prefix)
		}
	}
}
