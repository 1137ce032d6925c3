package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/containernetworking/cni/pkg/ns"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/attach"
)

// Timeouts per command: ADD may wait for a block of addresses from a peer
// (the agent gives up after a minute); the others are quick.
const (
	addTimeout   = 90 * time.Second
	otherTimeout = 30 * time.Second
)

// plugin holds the CNI commands. Each runs once per process.
type plugin struct {
	stderr io.Writer // notes for the runtime's log
}

func (p plugin) call(conf *netConf, timeout time.Duration, method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return api.NewClient(conf.Socket).Do(ctx, method, path, body, out)
}

func request(conf *netConf, args *skel.CmdArgs) api.CNIRequest {
	return api.CNIRequest{Network: conf.Name, ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns}
}

func (p plugin) cmdAdd(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	// skel makes the same check, but only after ADD has run: refuse first.
	if own, nerr := ns.CheckNetNS(args.Netns); nerr != nil {
		return nerr
	} else if own {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("flatmesh ADD: CNI_NETNS %s is this host's own network namespace", args.Netns),
			"give the container's namespace")
	}
	req := request(conf, args)
	req.Name = containerName(args.Args)
	var raw json.RawMessage
	if err := p.call(conf, addTimeout, http.MethodPost, "/cni/add", req, &raw); err != nil {
		return agentError("ADD", err, types.ErrTryAgainLater)
	}
	var att api.CNIAttachment
	if err := json.Unmarshal(raw, &att); err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("flatmesh ADD: reading the agent's answer: %v", err), "")
	}
	dns, err := agentDNS(raw)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "flatmesh ADD: "+err.Error(), "")
	}
	res, err := buildResult(att, args.Netns, mergeDNS(conf.DNS, dns), conf.PrevResult)
	if err != nil {
		return types.NewError(CodeAgentFailed, "flatmesh ADD: "+err.Error(), "")
	}
	return types.PrintResult(res, conf.CNIVersion)
}

// cmdDel asks the agent to detach and release. Without an agent it removes
// the host end of the veth pair itself (the same attach.Detach the agent
// runs; deleting one end deletes the pair): the agent, when it starts,
// finds the pair gone and releases the address, as it does for every
// container whose namespace vanished.
func (p plugin) cmdDel(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	req := request(conf, args)
	err = p.call(conf, otherTimeout, http.MethodPost, "/cni/del", req, &api.CNIDel{})
	var un *api.UnreachableError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &un):
		return agentError("DEL", err, types.ErrTryAgainLater)
	}
	ctx, cancel := context.WithTimeout(context.Background(), otherTimeout)
	defer cancel()
	id := api.CNIContainerID(conf.Name, args.ContainerID)
	if derr := attach.Detach(ctx, attach.DetachSpec{ContainerID: id, IfName: args.IfName}); derr != nil {
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("flatmesh DEL: %v, and removing the interface here failed: %v", un, derr), unreachableHint)
	}
	fmt.Fprintf(p.stderr, "flatmesh DEL: %v; removed %s of %s here: the agent releases its address when it starts\n",
		un, args.IfName, args.ContainerID)
	return nil
}

func (p plugin) cmdCheck(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	var out api.CNICheck
	if err := p.call(conf, otherTimeout, http.MethodPost, "/cni/check", request(conf, args), &out); err != nil {
		return agentError("CHECK", err, types.ErrTryAgainLater)
	}
	if len(out.Drift) > 0 {
		return driftError(out.Drift, nil)
	}
	if out.Attachment == nil {
		return types.NewError(CodeAgentFailed, "flatmesh CHECK: the agent answered neither an attachment nor drift", "")
	}
	mismatch, err := checkPrevResult(conf.PrevResult, *out.Attachment)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "flatmesh CHECK: "+err.Error(), "")
	}
	if len(mismatch) > 0 {
		return driftError(nil, mismatch)
	}
	return nil
}

func (p plugin) cmdGC(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	req := api.CNIGCRequest{Network: conf.Name, Valid: []api.CNIAttachmentRef{}}
	for _, v := range conf.ValidAttachments {
		req.Valid = append(req.Valid, api.CNIAttachmentRef{ContainerID: v.ContainerID, IfName: v.IfName})
	}
	var out api.CNIGC
	if err := p.call(conf, otherTimeout, http.MethodPost, "/cni/gc", req, &out); err != nil {
		return agentError("GC", err, types.ErrTryAgainLater)
	}
	for _, r := range out.Released {
		fmt.Fprintf(p.stderr, "flatmesh GC: released %s of %s (%s)\n", r.IP, r.Name, r.IfName)
	}
	return nil
}

func (p plugin) cmdStatus(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	var st api.CNIStatus
	if err := p.call(conf, otherTimeout, http.MethodGet, "/cni/status", nil, &st); err != nil {
		return agentError("STATUS", err, CodePluginNotAvailable)
	}
	switch {
	case !st.Ready:
		return types.NewError(CodePluginNotAvailable, "flatmesh STATUS: "+st.Reason, "")
	case st.Degraded:
		return types.NewError(CodeLimitedConnectivity, "flatmesh STATUS: "+st.Reason, "the agent's log (journalctl -u flatmesh) has more")
	}
	return nil
}
