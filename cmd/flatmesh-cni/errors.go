package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/flatmesh/flatmesh/agent/api"
)

// flatmesh's own CNI error codes (the spec leaves 100 and up to plugins).
// The well-known codes are used where they fit: 4 for input the agent
// refuses, 11 (try again later) while the agent is unreachable, 50 and 51
// for STATUS.
const (
	CodeAgentFailed      uint = 100 // the agent answered with an error; Msg holds its message
	CodeNoAllocation     uint = 101 // CHECK: the agent holds no address for the container
	CodeInterfaceMissing uint = 102 // CHECK: a veth end or the container's namespace is gone
	CodeInterfaceWrong   uint = 103 // CHECK: off the bridge, down, wrong MTU, not the pair
	CodeAddressWrong     uint = 104 // CHECK: the container's address is missing or another is there
	CodeRouteMissing     uint = 105 // CHECK: the default route is missing or changed
	CodeResultMismatch   uint = 106 // CHECK: prevResult disagrees with what the agent holds

	// CNI 1.1 STATUS codes (not yet constants in the library).
	CodePluginNotAvailable  uint = 50
	CodeLimitedConnectivity uint = 51
)

// driftCodes maps the agent's drift kinds to error codes.
var driftCodes = map[string]uint{
	api.DriftNoAllocation:     CodeNoAllocation,
	api.DriftInterfaceMissing: CodeInterfaceMissing,
	api.DriftInterfaceWrong:   CodeInterfaceWrong,
	api.DriftAddressWrong:     CodeAddressWrong,
	api.DriftRouteMissing:     CodeRouteMissing,
}

// unreachableHint tells a person what to do when the agent does not answer.
const unreachableHint = "start the flatmesh agent on this host (systemctl start flatmesh), or set \"socket\" in the network configuration to where it listens"

// agentError turns a failed call to the agent into a CNI error. op says
// what the plugin was doing ("ADD"); unreachable is the code to use when
// no agent answered.
func agentError(op string, err error, unreachable uint) *types.Error {
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	var un *api.UnreachableError
	if errors.As(err, &un) {
		return types.NewError(unreachable, fmt.Sprintf("flatmesh %s: %v", op, un), unreachableHint)
	}
	var se *api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusBadRequest {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("flatmesh %s: the agent refused the request: %v", op, se.Err), "")
	}
	return types.NewError(CodeAgentFailed, fmt.Sprintf("flatmesh %s: %v", op, err),
		"the agent's log (journalctl -u flatmesh) has more")
}

// driftError turns CHECK's findings into one CNI error: the code of the
// first finding, every finding in the message.
func driftError(drift []api.CNIDrift, mismatch []string) *types.Error {
	code := CodeResultMismatch
	var msgs []string
	for i, d := range drift {
		if i == 0 {
			code = driftCodes[d.Kind]
			if code == 0 {
				code = CodeAgentFailed
			}
		}
		msgs = append(msgs, d.Detail)
	}
	msgs = append(msgs, mismatch...)
	return types.NewError(code, "flatmesh CHECK: "+strings.Join(msgs, "; "),
		"DEL and ADD the container again to rebuild its interface (podman: restart it)")
}
