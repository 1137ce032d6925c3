package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/flatmesh/flatmesh/agent"
	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/cluster"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, newJoinCmd, newLeaveCmd, newStatusCmd, newPeersCmd, newKeygenCmd, newVersionCmd)
}

func newJoinCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "join ADDR[:PORT]...",
		Short: "Ask the local agent to join the cluster of a member",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if _, err := agent.ParseHostPort(a, agent.DefaultPort); err != nil {
					return fmt.Errorf("bad address %q: %w", a, err)
				}
			}
			_, err := callPrint(cmd, &f, "POST", "/join", api.JoinRequest{Addrs: args}, func(w io.Writer, out api.JoinResponse) {
				fmt.Fprintf(w, "joined: %d of %d addresses answered\n", out.Joined, len(args))
			})
			return err
		},
	}
	f.register(cmd)
	return cmd
}

func newLeaveCmd() *cobra.Command {
	var f clientFlags
	var req api.LeaveRequest
	cmd := &cobra.Command{
		Use:   "leave",
		Short: "Leave the cluster gracefully; the agent then exits 0",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := callPrint(cmd, &f, "POST", "/leave", req, func(w io.Writer, _ map[string]any) {
				fmt.Fprintln(w, "left the cluster; the agent is exiting")
			})
			return err
		},
	}
	cmd.Flags().BoolVar(&req.Purge, "purge", false, "also remove every device, route, rule and attachment the agent made")
	cmd.Flags().BoolVar(&req.Restore, "restore", false, "flat mode: put the NIC back as it was before the switch-over")
	f.register(cmd)
	return cmd
}

func newStatusCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this agent's state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := callPrint(cmd, &f, "GET", "/status", nil, printStatus)
			return err
		},
	}
	f.register(cmd)
	return cmd
}

func printStatus(w io.Writer, st api.Status) {
	t := newTable(w, "FIELD", "VALUE")
	t.row("name", st.Name)
	t.row("cluster", st.Cluster)
	t.row("mode", st.Mode)
	t.row("underlay", fmt.Sprintf("%s port %d", st.Underlay, st.Port))
	t.row("members", fmt.Sprintf("%d alive of %d known", st.Alive, st.Members))
	t.row("encrypted", strconv.FormatBool(st.Encrypted))
	if st.CIDR != "" {
		t.row("address space", st.CIDR)
	}
	t.row("blocks owned", strconv.Itoa(st.Blocks))
	t.row("containers", strconv.Itoa(st.Containers))
	if st.MTU != 0 {
		t.row("mtu", strconv.Itoa(st.MTU))
	}
	if st.WGDevice != "" {
		t.row("wireguard device", st.WGDevice)
	}
	if st.DNS != nil {
		t.row("dns", dnsLine(*st.DNS))
	}
	t.row("version", st.Version)
	t.row("uptime", st.Uptime)
	t.row("last pass", lastPass(st))
	for _, d := range st.Drift {
		t.row("drift", d)
	}
	t.flush()
}

// dnsLine sums up cluster DNS: domain, where it listens, what it answered.
func dnsLine(d api.DNSStatus) string {
	listen := "not listening yet"
	if len(d.Listen) > 0 {
		listen = "on " + strings.Join(d.Listen, ", ")
	}
	s := fmt.Sprintf("%s %s; %d names from %d hosts; answered %d, forwarded %d, refused %d",
		d.Domain, listen, d.Names, d.Hosts, d.Answered, d.Forwarded, d.Refused)
	if d.Error != "" {
		s += "; error: " + d.Error
	}
	return s
}

// lastPass says when the reconcile loop last ran and how it went.
func lastPass(st api.Status) string {
	switch {
	case st.LastPass == "":
		return "none yet"
	case st.LastPassError != "":
		s := fmt.Sprintf("FAILED %s ago: %s", st.LastPassAge, st.LastPassError)
		if st.LastApplied != "" {
			s += " (last success " + st.LastApplied + ")"
		}
		return s
	}
	return fmt.Sprintf("ok, %s ago", st.LastPassAge)
}

func newPeersCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "List the cluster's members as this agent sees them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := callPrint(cmd, &f, "GET", "/peers", nil, func(w io.Writer, peers []api.Peer) {
				t := newTable(w, "NAME", "ADDR", "PORT", "STATE", "MODE", "")
				for _, p := range peers {
					self := ""
					if p.Self {
						self = "(self)"
					}
					t.row(p.Name, p.Addr, strconv.Itoa(p.Port), p.State, p.Mode, self)
				}
				t.flush()
				printWGPeers(w, peers)
			})
			return err
		},
	}
	f.register(cmd)
	return cmd
}

func newKeygenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keygen FILE",
		Short: "Write a new gossip encryption key (mode 0600; - prints it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := cluster.GenerateKey()
			if err != nil {
				return err
			}
			if args[0] == "-" {
				fmt.Fprintln(cmd.OutOrStdout(), cluster.EncodeKey(key))
				return nil
			}
			if _, err := os.Stat(args[0]); err == nil {
				return fmt.Errorf("%s exists: refusing to overwrite a key (remove it first)", args[0])
			}
			if err := cluster.WriteKeyFile(args[0], key); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote a new gossip key to %s; copy it to every host and pass --key-file\n", args[0])
			return nil
		},
	}
	return cmd
}

// version is set by the linker (make build: -X main.version=$(git describe));
// without it, buildVersion falls back to what the Go toolchain stamped.
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	bi, _ := debug.ReadBuildInfo()
	return versionFromBuildInfo(bi)
}

// versionFromBuildInfo is the module version of a `go install pkg@v1.2.3`
// build, else "dev-" and the VCS revision a `go build` in a checkout
// stamps (with "-dirty" for uncommitted changes), else "dev". Never the
// toolchain's placeholder "(devel)".
func versionFromBuildInfo(bi *debug.BuildInfo) string {
	if bi == nil {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "dev"
	}
	if dirty {
		rev += "-dirty"
	}
	return "dev-" + rev
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]string{"version": buildVersion()})
			}
			fmt.Fprintln(cmd.OutOrStdout(), "flatmesh", buildVersion())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
