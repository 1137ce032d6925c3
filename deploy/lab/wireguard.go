package lab

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ModeWireGuard: hosts on 10.99.0.0/24 (as vxlan), WireGuard overlay between
// them. Each agent runs in a mount namespace of its own with a private
// tmpfs on /run/wireguard: a userspace device's UAPI socket is
// /var/run/wireguard/NAME.sock, one directory for every network namespace,
// so two lab hosts' flatmesh.wg sockets would collide there.
const ModeWireGuard = "wireguard"

// wgSocketDir is where wireguard-go puts UAPI sockets (/var/run is /run).
const wgSocketDir = "/run/wireguard"

// agentCommand is the nsenter argument list that starts an agent in
// netnsPath. In wireguard mode the agent also gets its own mount namespace
// (slave propagation: the host's mounts still show, ours stay inside) with
// a fresh tmpfs on /run/wireguard; the API socket, in the host's lab dir,
// stays reachable. Every step execs, so the PID is the agent's.
func agentCommand(mode, netnsPath, binary string, args []string) []string {
	cmd := []string{"--net=" + netnsPath, "--"}
	if mode == ModeWireGuard {
		cmd = append(cmd, "unshare", "--mount", "--propagation", "slave", "--", "sh", "-c",
			`mkdir -p `+wgSocketDir+` && mount -t tmpfs -o mode=0700,size=1m flatmesh-wg `+wgSocketDir+` && exec "$0" "$@"`)
	}
	return append(append(cmd, binary), args...)
}

// WG runs `wg ARGS` (wireguard-tools) against host's agent: inside its
// network and mount namespaces, where its device and UAPI socket are.
func (l *Lab) WG(ctx context.Context, host string, args ...string) ([]byte, error) {
	h, err := l.Host(host)
	if err != nil {
		return nil, err
	}
	if h.PID <= 0 {
		return nil, fmt.Errorf("agent %s is not running", host)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	full := append([]string{"-t", strconv.Itoa(h.PID), "-m", "-n", "wg"}, args...)
	out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("wg %s on %s: %w: %s", strings.Join(args, " "), host, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}
