package main

import "testing"

func TestParseDockerCalls(t *testing.T) {
	before, err := parseDockerCalls([]byte(`# HELP flatmesh_docker_call_duration_seconds x
flatmesh_docker_call_duration_seconds_bucket{call="NetworkDriver.Join",result="ok",le="0.0001"} 0
flatmesh_docker_call_duration_seconds_sum{call="NetworkDriver.Join",result="ok"} 0.004
flatmesh_docker_call_duration_seconds_count{call="NetworkDriver.Join",result="ok"} 2
flatmesh_reconcile_duration_seconds_sum 9
`))
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseDockerCalls([]byte(`flatmesh_docker_call_duration_seconds_sum{call="NetworkDriver.Join",result="ok"} 0.007
flatmesh_docker_call_duration_seconds_count{call="NetworkDriver.Join",result="ok"} 3
flatmesh_docker_call_duration_seconds_sum{call="IpamDriver.RequestAddress",result="ok"} 0.0005
flatmesh_docker_call_duration_seconds_count{call="IpamDriver.RequestAddress",result="ok"} 1
`))
	if err != nil {
		t.Fatal(err)
	}
	ms, n := after.since(before)
	if n != 2 || ms < 3.49 || ms > 3.51 {
		t.Fatalf("since: %v ms over %d calls, want 3.5 ms over 2", ms, n)
	}
	if _, err := parseDockerCalls([]byte("flatmesh_docker_call_duration_seconds_sum{call=\"x\"} nope\n")); err == nil {
		t.Fatal("a malformed value was accepted")
	}
}
