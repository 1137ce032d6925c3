package agent

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/ipam"
)

// Detaches fired at once are all answered, each with its own container,
// and every pair and address is gone afterwards.
func TestDetachBurst(t *testing.T) {
	n := newTestNode(t, "h1", 1, true, overlayCaps)
	ctx := context.Background()
	const count = 30
	for i := range count {
		id := fmt.Sprintf("netns:4:%d", 4026540000+i)
		if _, err := n.a.attachNetns(ctx, ipam.Request{ID: id, IfName: "eth0", Name: fmt.Sprintf("c%d", i)}, "/run/netns/x"); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	outs := make([][]api.Attachment, count)
	errs := make([]error, count)
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := n.a.handleDetach(jsonRequest(t, api.DetachRequest{Target: fmt.Sprintf("c%d", i)}))
			errs[i] = err
			if err == nil {
				outs[i] = out.([]api.Attachment)
			}
		}()
	}
	wg.Wait()
	for i := range count {
		if errs[i] != nil || len(outs[i]) != 1 || outs[i][0].Name != fmt.Sprintf("c%d", i) {
			t.Fatalf("detach c%d: %v %+v", i, errs[i], outs[i])
		}
	}
	if got := n.a.ipam.Allocations(); len(got) != 0 {
		t.Fatalf("allocations left: %+v", got)
	}
	for i := range count {
		n.requireDetached(t, fmt.Sprintf("netns:4:%d", 4026540000+i), "eth0")
	}
	if found, _ := n.kernel.List(ctx, ""); len(found) != 0 {
		t.Fatalf("veths left: %+v", found)
	}
	if _, err := n.a.handleDetach(jsonRequest(t, api.DetachRequest{Target: "c1"})); err == nil {
		t.Fatal("a second detach of c1 found it")
	}
	n.checkLockRule(t)
}
