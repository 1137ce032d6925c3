package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// TestRootFirstPingAfterAttach: an attach answers only when the container
// can reach its peers, so the very first ping after it is answered, also
// for a host's first container (a block donated a moment ago, which the
// other hosts must learn to route) and from a container on another host.
func TestRootFirstPingAfterAttach(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 3, ContainersPerHost: lab.NoContainers})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var prev *lab.Container
	for round := 0; round < 2; round++ {
		for _, h := range []string{"h2", "h3", "h1"} {
			c, err := l.AddContainer(ctx, h)
			if err != nil {
				t.Fatalf("attach on %s: %v", h, err)
			}
			// Straight away, one packet each: from another host and from
			// the previous container (on another host).
			other := map[string]string{"h1": "h2", "h2": "h3", "h3": "h1"}[h]
			oh, err := l.Host(other)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := kerneltest.NsOutput(oh.Netns, "ping", "-c", "1", "-W", "1", c.IP.Addr().String()); err != nil {
				t.Errorf("first ping %s -> %s (%s, just attached on %s) lost: %v\n%s", other, c.Name, c.IP.Addr(), h, err, out)
			}
			if prev != nil {
				if out, err := kerneltest.NsOutput(prev.Netns, "ping", "-c", "1", "-W", "1", c.IP.Addr().String()); err != nil {
					t.Errorf("first ping %s -> %s lost: %v\n%s", prev.Name, c.Name, err, out)
				}
			}
			prev = &c
		}
	}
}
