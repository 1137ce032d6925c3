// Package api is the agent's local HTTP+JSON API on a unix socket: the wire
// types, the client the CLI uses, and small server helpers. Paths are
// versioned (/v1/...). JSON field names are a contract that scripts rely on:
// add fields freely, never rename one.
package api

// Version is the API path prefix.
const Version = "/v1"

// Status answers GET /v1/status.
type Status struct {
	Name        string `json:"name"`
	Cluster     string `json:"cluster"`
	Mode        string `json:"mode"`
	Alive       int    `json:"alive"`
	Members     int    `json:"members"`
	Underlay    string `json:"underlay"`
	Port        int    `json:"port"`
	Version     string `json:"version"`
	Uptime      string `json:"uptime"`
	Containers  int    `json:"containers"`
	Encrypted   bool   `json:"encrypted"`
	Fingerprint string `json:"fingerprint"`
	CIDR        string `json:"cidr,omitempty"`
	MTU         int    `json:"mtu,omitempty"`
	Bridge      string `json:"bridge,omitempty"`
	Blocks      int    `json:"blocks"`
	// The last reconcile pass: when it ended (RFC 3339), how long ago, its
	// error ("" when it succeeded), and when a pass last succeeded.
	LastPass      string `json:"last_pass,omitempty"`
	LastPassAge   string `json:"last_pass_age,omitempty"`
	LastPassError string `json:"last_pass_error,omitempty"`
	LastApplied   string `json:"last_applied,omitempty"`
	// Drift lists what the data plane found changed on state that is not
	// its own and left alone (flat mode: the host's addresses and default
	// route on the bridge).
	Drift    []string `json:"drift,omitempty"`
	WGDevice string   `json:"wg_device,omitempty"` // wireguard mode: "kernel" or "userspace"
	// DNS is the cluster DNS; absent when it is off.
	DNS *DNSStatus `json:"dns,omitempty"`
}

// DNSStatus is the cluster DNS part of status.
type DNSStatus struct {
	Domain    string   `json:"domain"`
	Listen    []string `json:"listen"`    // IP:PORT served (UDP and TCP)
	Upstreams []string `json:"upstreams"` // where other names are forwarded
	Hosts     int      `json:"hosts"`     // hosts with a names record, us included
	Names     int      `json:"names"`     // their entries
	Error     string   `json:"error,omitempty"`
	// Query counters since the agent started.
	Answered  uint64 `json:"answered"`  // cluster names and their negative answers
	Forwarded uint64 `json:"forwarded"` // answered by an upstream resolver
	Refused   uint64 `json:"refused"`   // sources outside the cluster
	Dropped   uint64 `json:"dropped"`   // over the per-source rate, or not a query
	Failed    uint64 `json:"failed"`    // SERVFAIL: no upstream answered, or too many in flight
}

// Peer is one member as `flatmesh peers --json` prints it.
type Peer struct {
	Name     string `json:"name"`
	Addr     string `json:"addr"`
	Port     int    `json:"port"`
	State    string `json:"state"`
	Mode     string `json:"mode"`
	Cluster  string `json:"cluster"`
	Underlay string `json:"underlay"`
	Self     bool   `json:"self"`
	// WireGuard mode: the peer's public key, our device's last handshake
	// with it (RFC 3339; empty = never) and bytes received from / sent to it.
	WGPublicKey string `json:"wg_public_key,omitempty"`
	WGHandshake string `json:"wg_handshake,omitempty"`
	WGRxBytes   int64  `json:"wg_rx_bytes,omitempty"`
	WGTxBytes   int64  `json:"wg_tx_bytes,omitempty"`
}

// WGRotateResponse answers POST /v1/wg/rotate.
type WGRotateResponse struct {
	PublicKey string `json:"public_key"`
}

// JoinRequest is the body of POST /v1/join.
type JoinRequest struct {
	Addrs []string `json:"addrs"`
}

// JoinResponse answers POST /v1/join.
type JoinResponse struct {
	Joined int `json:"joined"`
}

// LeaveRequest is the body of POST /v1/leave. The agent leaves the cluster,
// answers, and then exits 0.
type LeaveRequest struct {
	Purge   bool `json:"purge"`   // remove every kernel object the agent made
	Restore bool `json:"restore"` // flat mode: put the NIC back as recorded
}

// AttachRequest is the body of POST /v1/attach.
type AttachRequest struct {
	Netns  string `json:"netns"`
	Name   string `json:"name,omitempty"`
	IP     string `json:"ip,omitempty"`
	IfName string `json:"ifname,omitempty"`
}

// Attachment is one container interface attached by this agent.
type Attachment struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Netns   string `json:"netns"`
	IfName  string `json:"ifname"`
	IP      string `json:"ip"`
	Gateway string `json:"gateway"`
	MAC     string `json:"mac"`
	MTU     int    `json:"mtu"`
	HostIf  string `json:"host_if"`
	// DNS lists the cluster DNS servers this container should use (absent
	// when cluster DNS is off); flatmesh does not write the container's
	// resolv.conf.
	DNS []string `json:"dns,omitempty"`
	// DNSDomain is the cluster DNS domain (its search domain).
	DNSDomain string `json:"dns_domain,omitempty"`
}

// DetachRequest is the body of POST /v1/detach: a namespace or a name.
type DetachRequest struct {
	Target string `json:"target"`
}

// Block is one IPAM block as `flatmesh ipam --json` prints it.
type Block struct {
	Prefix    string `json:"prefix"`
	Owner     string `json:"owner"`
	Version   uint64 `json:"version"`
	Used      int    `json:"used"`
	Free      int    `json:"free"`
	Reachable bool   `json:"reachable"`
}

// IPAM answers GET /v1/ipam.
type IPAM struct {
	CIDR   string  `json:"cidr"`
	Seed   string  `json:"seed"`
	Digest string  `json:"digest"`
	Blocks []Block `json:"blocks"`
}

// IPAMCheck answers GET /v1/ipam/check. OK is false when Problems is not empty.
type IPAMCheck struct {
	OK       bool     `json:"ok"`
	Problems []string `json:"problems"`
	Digest   string   `json:"digest"`
	Peers    []string `json:"peers_agreeing"`
}

// RemovePeerRequest is the body of POST /v1/ipam/rmpeer.
type RemovePeerRequest struct {
	Name string `json:"name"`
}

// RemovePeerResponse answers POST /v1/ipam/rmpeer.
type RemovePeerResponse struct {
	Name      string `json:"name"`
	Reclaimed int    `json:"reclaimed"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}
