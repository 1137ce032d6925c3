package agent

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/containernetworking/cni/pkg/utils"
	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/attach"
	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/ipam"
)

// The CNI endpoints serve the flatmesh-cni plugin (cmd/flatmesh-cni). ADD
// runs the attach flow of POST /v1/attach (attachNetns), DEL the detach
// flow, CHECK compares the kernel with what ADD made (attach.Check), GC
// removes the attachments of a network that the runtime no longer lists.
// A CNI attachment is identified by api.CNIContainerID(network, container
// ID) and the interface name, never by its namespace path.

// cniRoutes registers the CNI endpoints with handle.
func (a *Agent) cniRoutes(handle func(method, path string, h api.Handler)) {
	handle("POST", "/cni/add", a.handleCNIAdd)
	handle("POST", "/cni/del", a.handleCNIDel)
	handle("POST", "/cni/check", a.handleCNICheck)
	handle("POST", "/cni/gc", a.handleCNIGC)
	handle("GET", "/cni/status", a.handleCNIStatus)
}

// attachSpec is the attach.Spec of allocation al in namespace netns: what
// attach, CNI ADD and CNI CHECK all use.
func (a *Agent) attachSpec(al ipam.Allocation, netns string) attach.Spec {
	return attach.Spec{
		Netns:         netns,
		IfName:        al.IfName,
		ContainerID:   al.ID,
		Name:          al.Name,
		Bridge:        a.plane.Bridge(),
		Address:       a.plane.Address(al),
		Gateway:       a.plane.Gateway(al),
		MTU:           a.plane.MTU(),
		GratuitousARP: a.plane.Capabilities().GratuitousARP,
	}
}

// checkCNIIdentity validates the identity fields of a CNI request and
// returns the agent's ID for the attachment.
func checkCNIIdentity(network, containerID, ifname string) (string, error) {
	if err := utils.ValidateNetworkName(network); err != nil {
		return "", api.BadRequest(fmt.Errorf("network name %q: %s", network, err.Msg))
	}
	if err := utils.ValidateContainerID(containerID); err != nil {
		return "", api.BadRequest(fmt.Errorf("container id %q: %s", containerID, err.Msg))
	}
	if err := kernel.ValidateIfName(ifname); err != nil {
		return "", api.BadRequest(err)
	}
	id := api.CNIContainerID(network, containerID)
	if err := attach.ValidateContainerID(id); err != nil {
		return "", api.BadRequest(fmt.Errorf("network name and container id are too long together: %w", err))
	}
	return id, nil
}

// decodeCNI reads and checks a CNIRequest; it returns the request, with
// Name filled in, and the attachment's ID.
func decodeCNI(r *http.Request) (api.CNIRequest, string, error) {
	var req api.CNIRequest
	if err := api.Decode(r, &req); err != nil {
		return req, "", err
	}
	id, err := checkCNIIdentity(req.Network, req.ContainerID, req.IfName)
	if err != nil {
		return req, "", err
	}
	if req.Name == "" {
		req.Name = req.ContainerID[:min(12, len(req.ContainerID))]
	}
	if err := api.CheckCNIName(req.Name); err != nil {
		return req, "", api.BadRequest(err)
	}
	return req, id, nil
}

// errNoContainers answers ADD in a mode that attaches no containers.
func (a *Agent) errNoContainers() error {
	return &api.StatusError{Code: http.StatusServiceUnavailable,
		Err: fmt.Errorf("the %s data plane is not built yet: this agent cannot attach containers (run it with --mode vxlan or flat)", a.cfg.Mode)}
}

func (a *Agent) handleCNIAdd(r *http.Request) (any, error) {
	req, id, err := decodeCNI(r)
	if err != nil {
		return nil, err
	}
	if !a.plane.Capabilities().Attach {
		return nil, a.errNoContainers()
	}
	ns, err := kernel.ContainerNetns(req.Netns) // refuses the host's own namespace
	if err != nil {
		return nil, api.BadRequest(err)
	}
	path := ns.Path
	att, err := a.attachNetns(r.Context(), ipam.Request{ID: id, IfName: req.IfName, Name: req.Name}, path)
	if err != nil {
		return nil, err
	}
	out := api.CNIAttachment{Attachment: att}
	out.Netns = path
	// The host end's MAC belongs in the CNI result; read it back with the
	// check CHECK runs, which also confirms what ADD made.
	if al, ok := a.ipam.Lookup(id, req.IfName); ok {
		if rep, err := attach.Check(r.Context(), a.attachSpec(al, path)); err == nil {
			out.HostMAC = rep.HostMAC.String()
		}
	}
	return out, nil
}

// handleCNIDel detaches through the detach worker (detach_batch.go), as
// `flatmesh detach` does: it answers once the container is cut off and its
// address released; the pair is deleted right after. DEL is idempotent:
// without an allocation it removes a pair that may have outlived one, and
// a container already gone is success. An ADD of the same container right
// after waits for the old pair to go (attachNetns, awaitDeleted).
func (a *Agent) handleCNIDel(r *http.Request) (any, error) {
	req, id, err := decodeCNI(r)
	if err != nil {
		return nil, err
	}
	if a.isPending(id, req.IfName) {
		return nil, &api.StatusError{Code: http.StatusConflict,
			Err: fmt.Errorf("container %s %s is being added right now; DEL it once ADD is done", req.ContainerID, req.IfName)}
	}
	var als []ipam.Allocation
	var orphans []attach.DetachSpec
	if al, ok := a.ipam.Lookup(id, req.IfName); ok {
		als = append(als, al)
	} else {
		orphans = append(orphans, attach.DetachSpec{ContainerID: id, IfName: req.IfName})
	}
	released, err := a.detachBatched(r.Context(), als, orphans)
	if err != nil {
		return nil, err
	}
	out := api.CNIDel{}
	if len(released) > 0 {
		out.Released = &released[0]
	}
	return out, nil
}

func (a *Agent) handleCNICheck(r *http.Request) (any, error) {
	req, id, err := decodeCNI(r)
	if err != nil {
		return nil, err
	}
	if req.Netns == "" {
		return nil, api.BadRequest(errors.New("no network namespace given (CNI_NETNS)"))
	}
	if err := a.awaitDeleted(r.Context(), id); err != nil {
		return nil, err
	}
	al, ok := a.ipam.Lookup(id, req.IfName)
	if !ok {
		return api.CNICheck{Drift: []api.CNIDrift{{Kind: api.DriftNoAllocation, Detail: fmt.Sprintf(
			"the flatmesh agent holds no address for container %s interface %s on network %s: ADD it again",
			req.ContainerID, req.IfName, req.Network)}}}, nil
	}
	rep, err := attach.Check(r.Context(), a.attachSpec(al, req.Netns))
	if err != nil {
		return nil, err
	}
	att := api.CNIAttachment{Attachment: a.attachmentOut(al, rep.HostIf, rep.MAC.String(), rep.MTU), HostMAC: rep.HostMAC.String()}
	att.Netns = req.Netns
	out := api.CNICheck{Attachment: &att, Drift: []api.CNIDrift{}}
	for _, d := range rep.Drift {
		out.Drift = append(out.Drift, api.CNIDrift{Kind: string(d.Kind), Detail: d.Detail})
	}
	return out, nil
}

func (a *Agent) handleCNIGC(r *http.Request) (any, error) {
	var req api.CNIGCRequest
	if err := api.Decode(r, &req); err != nil {
		return nil, err
	}
	if err := utils.ValidateNetworkName(req.Network); err != nil {
		return nil, api.BadRequest(fmt.Errorf("network name %q: %s", req.Network, err.Msg))
	}
	valid := map[string]bool{}
	for _, v := range req.Valid {
		id, err := checkCNIIdentity(req.Network, v.ContainerID, v.IfName)
		if err != nil {
			return nil, err
		}
		valid[pendingKey(id, v.IfName)] = true
	}
	stale := func(id, ifname string) bool {
		nw, _, ok := api.ParseCNIContainerID(id)
		return ok && nw == req.Network && !valid[pendingKey(id, ifname)] && !a.isPending(id, ifname)
	}
	var als []ipam.Allocation
	held := map[string]bool{}
	for _, al := range a.ipam.Allocations() {
		if stale(al.ID, al.IfName) {
			als = append(als, al)
			held[pendingKey(al.ID, al.IfName)] = true
		}
	}
	// Pairs without an allocation (left by a crash between the two steps).
	found, err := a.ctrs.List(r.Context(), "")
	if err != nil {
		return nil, err
	}
	var orphans []attach.DetachSpec
	for _, f := range found {
		if stale(f.ContainerID, f.IfName) && !held[pendingKey(f.ContainerID, f.IfName)] && !a.isDeleting(f.ContainerID, f.IfName) {
			orphans = append(orphans, attach.DetachSpec{ContainerID: f.ContainerID, IfName: f.IfName})
		}
	}
	out := api.CNIGC{Released: []api.Attachment{}}
	if len(als)+len(orphans) == 0 {
		return out, nil
	}
	released, err := a.detachBatched(r.Context(), als, orphans)
	out.Released = append(out.Released, released...)
	if err != nil {
		return out, err
	}
	// A detach answers once the pairs are cut off and deletes them right
	// after (detach_pending.go); GC is no one's latency path, so it answers
	// once the attachments it removed are gone from the kernel too.
	gone := map[string]bool{}
	for _, al := range als {
		gone[pendingKey(al.ID, al.IfName)] = true
	}
	for _, o := range orphans {
		gone[pendingKey(o.ContainerID, o.IfName)] = true
	}
	_, err = a.awaitMarks(r.Context(), func(k string) bool { return gone[k] })
	return out, err
}

func (a *Agent) handleCNIStatus(_ *http.Request) (any, error) {
	st := api.CNIStatus{Mode: a.cfg.Mode, Ready: a.plane.Capabilities().Attach}
	if !st.Ready {
		st.Reason = a.errNoContainers().Error()
		return st, nil
	}
	if lastErr := a.lastPass().err; lastErr != nil {
		st.Degraded = true
		st.Reason = "the data plane's last reconcile failed: " + strings.TrimSpace(lastErr.Error())
	}
	return st, nil
}
