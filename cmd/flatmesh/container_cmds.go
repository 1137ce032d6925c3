package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, newAttachCmd, newDetachCmd, newContainersCmd)
}

func newAttachCmd() *cobra.Command {
	var f clientFlags
	var req api.AttachRequest
	cmd := &cobra.Command{
		Use:   "attach NETNS",
		Short: "Attach a network namespace (path, name under /run/netns, or PID) to the mesh",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Netns = absNetns(args[0])
			var out api.Attachment
			if err := f.call("POST", "/attach", req, &out); err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			printAttachments(cmd, []api.Attachment{out})
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Name, "name", "", "container name (for listings and DNS)")
	cmd.Flags().StringVar(&req.IP, "ip", "", "ask for this address")
	cmd.Flags().StringVar(&req.IfName, "ifname", "eth0", "interface name inside the namespace")
	f.register(cmd)
	return cmd
}

// absNetns makes a relative path absolute; names and PIDs pass through, the
// agent resolves them.
func absNetns(s string) string {
	if _, err := strconv.Atoi(s); err == nil {
		return s
	}
	if filepath.Base(s) != s && !filepath.IsAbs(s) {
		if abs, err := filepath.Abs(s); err == nil {
			return abs
		}
	}
	return s
}

func newDetachCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "detach NETNS|NAME",
		Short: "Detach a container and release its addresses",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.Attachment
			if err := f.call("POST", "/detach", api.DetachRequest{Target: absNetns(args[0])}, &out); err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			for _, a := range out {
				fmt.Fprintf(cmd.OutOrStdout(), "detached %s %s (%s)\n", a.Name, a.IfName, a.IP)
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newContainersCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "containers",
		Short: "List the containers attached on this host",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []api.Attachment
			if err := f.call("GET", "/containers", nil, &out); err != nil {
				return err
			}
			if f.json {
				if out == nil {
					out = []api.Attachment{}
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			printAttachments(cmd, out)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func printAttachments(cmd *cobra.Command, list []api.Attachment) {
	if len(list) == 0 {
		fmt.Fprintln(os.Stderr, "no containers attached")
		return
	}
	t := newTable(cmd.OutOrStdout(), "NAME", "IP", "GATEWAY", "IFNAME", "MAC", "MTU", "NETNS")
	for _, a := range list {
		t.row(a.Name, a.IP, a.Gateway, a.IfName, a.MAC, strconv.Itoa(a.MTU), a.Netns)
	}
	t.flush()
}
