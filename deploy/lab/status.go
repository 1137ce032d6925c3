package lab

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// Status is a snapshot of a lab: what it is made of and how its agents are.
type Status struct {
	Name       string       `json:"name"`
	Mode       string       `json:"mode"`
	WorkDir    string       `json:"work_dir"`
	Binary     string       `json:"binary"`
	FlatRange  netip.Prefix `json:"flat_range,omitzero"`
	Switch     Machine      `json:"switch"`
	Plain      *Machine     `json:"plain,omitempty"`
	Hosts      []HostStatus `json:"hosts"`
	Containers []Container  `json:"containers"`
}

// HostStatus is a host with what its agent reports.
type HostStatus struct {
	Host
	NetnsPresent bool   `json:"netns_present"`
	AgentRunning bool   `json:"agent_running"`
	Alive        int    `json:"alive"`           // live members it sees; -1 unknown
	Cluster      string `json:"cluster"`         // as the agent reports it
	Error        string `json:"error,omitempty"` // why the agent did not answer
}

// Status inspects the lab: namespaces, agent processes, and each running
// agent's `status --json` (asked in parallel, 5 s at most each).
func (l *Lab) Status() Status {
	l.mu.Lock()
	st := Status{
		Name: l.d.Name, Mode: l.d.Mode, WorkDir: l.d.WorkDir, Binary: l.d.Binary,
		FlatRange: l.d.FlatRange, Switch: l.d.Switch,
		Containers: append([]Container(nil), l.d.Containers...),
	}
	if l.d.Plain != nil {
		pm := *l.d.Plain
		st.Plain = &pm
	}
	for i := range l.d.Hosts {
		h := &l.d.Hosts[i]
		hs := HostStatus{Host: *h, NetnsPresent: netnsExists(h.Netns), AgentRunning: l.runningLocked(h), Alive: -1}
		hs.Args = append([]string(nil), h.Args...)
		st.Hosts = append(st.Hosts, hs)
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for i := range st.Hosts {
		hs := &st.Hosts[i]
		if !hs.AgentRunning {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			as, err := l.AgentStatus(ctx, hs.Name)
			if err != nil {
				hs.Error = err.Error()
				return
			}
			hs.Alive, hs.Cluster = as.Alive, as.Cluster
		}()
	}
	wg.Wait()
	return st
}
