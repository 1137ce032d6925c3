package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/flatmesh/flatmesh/agent/api"
)

// DefaultSocket is where the agent listens unless "socket" says otherwise.
const DefaultSocket = "/run/flatmesh/flatmesh.sock"

// netConf is the plugin's network configuration:
//
//	{"cniVersion": "1.0.0", "name": "NAME", "type": "flatmesh", "socket": "/run/flatmesh/flatmesh.sock"}
type netConf struct {
	types.PluginConf
	Socket string `json:"socket,omitempty"`
}

// parseConf reads the configuration from stdin's bytes and the previous
// result of a chain, if any.
func parseConf(stdin []byte) (*netConf, error) {
	conf := &netConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("flatmesh: reading the network configuration: %v", err), "")
	}
	if conf.Type != "" && conf.Type != "flatmesh" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("flatmesh: the configuration's type is %q, want \"flatmesh\"", conf.Type), "")
	}
	if conf.Socket == "" {
		conf.Socket = DefaultSocket
	}
	if !strings.HasPrefix(conf.Socket, "/") {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("flatmesh: \"socket\" %q is not an absolute path", conf.Socket),
			"give the agent's socket, by default "+DefaultSocket)
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("flatmesh: reading prevResult: %v", err), "")
	}
	return conf, nil
}

// containerName takes the container's name from CNI_ARGS (K8S_POD_NAME,
// which podman and Kubernetes runtimes set); "" when absent or not a valid
// name (the agent then names it after the container ID).
func containerName(cniArgs string) string {
	for _, kv := range strings.Split(cniArgs, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k == "K8S_POD_NAME" && api.CheckCNIName(v) == nil {
			return v
		}
	}
	return ""
}
