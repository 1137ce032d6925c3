package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

const (
	netnsDir   = "/run/netns"
	bridgeName = "sw0" // the switch's bridge, inside the switch namespace
	cmdTimeout = 60 * time.Second
)

// NetnsPath is the file pinning a named namespace.
func NetnsPath(ns string) string { return filepath.Join(netnsDir, ns) }

// run runs a command and returns its combined output; the error names the
// command and carries its output.
func run(ctx context.Context, log hclog.Logger, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second // a child left holding the pipe cannot hang us
	log.Trace("run", "cmd", name, "args", args)
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// ip runs an iproute2 command, in namespace ns unless ns is empty.
func ip(ctx context.Context, log hclog.Logger, ns string, args ...string) error {
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	_, err := run(ctx, log, "ip", args...)
	return err
}

func netnsExists(ns string) bool {
	_, err := os.Stat(NetnsPath(ns))
	return err == nil
}

// createNetns makes a namespace with lo up. An existing one is an error: the
// lab only uses namespaces it made (stale labs are torn down first).
func createNetns(ctx context.Context, log hclog.Logger, ns string) error {
	if netnsExists(ns) {
		return fmt.Errorf("creating namespace %s: it already exists and is not this lab's", ns)
	}
	if _, err := run(ctx, log, "ip", "netns", "add", ns); err != nil {
		return fmt.Errorf("creating namespace: %w", err)
	}
	if err := ip(ctx, log, ns, "link", "set", "lo", "up"); err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	return nil
}

// createSwitch makes the switch's bridge: STP off, so ports forward at once.
func createSwitch(ctx context.Context, log hclog.Logger, ns string) error {
	steps := [][]string{
		{"link", "add", bridgeName, "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		{"link", "set", bridgeName, "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, log, ns, s...); err != nil {
			return fmt.Errorf("creating switch: %w", err)
		}
	}
	return nil
}

// ipStep is one iproute2 command in a namespace.
type ipStep struct {
	ns   string
	args []string
}

// plugIn connects namespace ns to the switch: a veth whose switch end
// (port, a short name local to the switch namespace) joins the bridge and
// whose other end is created directly inside ns as eth0, with addr on it and
// a default route via gw when gw is valid.
func plugIn(ctx context.Context, log hclog.Logger, sw, port, ns string, addr netip.Prefix, gw netip.Addr) error {
	steps := []ipStep{
		{sw, []string{"link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns}},
		{sw, []string{"link", "set", port, "master", bridgeName, "up"}},
		{ns, []string{"addr", "add", addr.String(), "dev", "eth0"}},
		{ns, []string{"link", "set", "eth0", "up"}},
	}
	if gw.IsValid() {
		steps = append(steps, ipStep{ns, []string{"route", "add", "default", "via", gw.String(), "dev", "eth0"}})
	}
	for _, s := range steps {
		if err := ip(ctx, log, s.ns, s.args...); err != nil {
			return fmt.Errorf("connecting %s to the switch: %w", ns, err)
		}
	}
	return nil
}

// netnsPIDs lists the processes whose network namespace is ns.
func netnsPIDs(ctx context.Context, log hclog.Logger, ns string) ([]int, error) {
	out, err := run(ctx, log, "ip", "netns", "pids", ns)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil && p != os.Getpid() {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// deleteNetns kills every process left in ns (they are the lab's: agents,
// pings, iperf3 servers), waits for them, then deletes the namespace, which
// takes its links with it. A missing namespace is not an error.
func deleteNetns(ctx context.Context, log hclog.Logger, ns string) error {
	if !netnsExists(ns) {
		return nil
	}
	pids, err := netnsPIDs(ctx, log, ns)
	if err != nil {
		log.Debug("listing processes in namespace", "netns", ns, "error", err)
	}
	for _, p := range pids {
		_ = signalPID(p, 9)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pids {
		for !pidGone(p) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := run(ctx, log, "ip", "netns", "del", ns); err != nil && netnsExists(ns) {
		return fmt.Errorf("deleting namespace: %w", err)
	}
	return nil
}

// listNetns lists the named namespaces under /run/netns.
func listNetns() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, nil
}

// labNamespaces lists the existing namespaces that belong to lab name.
func labNamespaces(name string) ([]string, error) {
	all, err := listNetns()
	if err != nil {
		return nil, err
	}
	re := nsRegexp(name)
	var out []string
	for _, n := range all {
		if re.MatchString(n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Exec runs a command inside namespace ns (ip netns exec) with a 60 s
// ceiling and returns its combined output. Safe for concurrent use.
func (l *Lab) Exec(ns string, cmd ...string) ([]byte, error) {
	return l.ExecContext(context.Background(), ns, cmd...)
}

// ExecContext is Exec with a context.
func (l *Lab) ExecContext(ctx context.Context, ns string, cmd ...string) ([]byte, error) {
	if len(cmd) == 0 {
		return nil, errors.New("exec: no command")
	}
	if !netnsExists(ns) {
		return nil, fmt.Errorf("exec in %s: no such namespace", ns)
	}
	return run(ctx, l.log, "ip", append([]string{"netns", "exec", ns}, cmd...)...)
}
