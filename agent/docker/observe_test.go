package docker

import (
	"sync"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/ipam"
)

// Every call is reported to Observe with its protocol name, its duration
// and whether Docker got an error.
func TestObserveTimesEveryCall(t *testing.T) {
	type obs struct {
		call   string
		took   time.Duration
		failed bool
	}
	var mu sync.Mutex
	var got []obs
	_, c := startPluginWith(t, Options{Backend: newFake(flatSpace), Observe: func(call string, took time.Duration, failed bool) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, obs{call, took, failed})
	}})
	var pr ipam.RequestPoolResponse
	c.ok("/IpamDriver.RequestPool", ipam.RequestPoolRequest{}, &pr)
	c.refused("/IpamDriver.RequestPool", ipam.RequestPoolRequest{Pool: "10.9.0.0/16"}, "does not fit")
	var ar ipam.RequestAddressResponse
	c.ok("/IpamDriver.RequestAddress", ipam.RequestAddressRequest{PoolID: pr.PoolID}, &ar)
	mu.Lock()
	defer mu.Unlock()
	want := []obs{{call: "IpamDriver.RequestPool"}, {call: "IpamDriver.RequestPool", failed: true}, {call: "IpamDriver.RequestAddress"}}
	if len(got) != len(want) {
		t.Fatalf("observed %+v, want %d calls", got, len(want))
	}
	for i, w := range want {
		if got[i].call != w.call || got[i].failed != w.failed || got[i].took <= 0 {
			t.Fatalf("call %d observed %+v, want %+v with a duration", i, got[i], w)
		}
	}
}
