package main

import (
	"fmt"
	"io"
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
			_, err := callPrint(cmd, &f, "POST", "/attach", req, func(w io.Writer, out api.Attachment) {
				printAttachments(w, []api.Attachment{out})
			})
			return err
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
			_, err := callPrint(cmd, &f, "POST", "/detach", api.DetachRequest{Target: absNetns(args[0])}, func(w io.Writer, out []api.Attachment) {
				for _, a := range out {
					fmt.Fprintf(w, "detached %s %s (%s)\n", a.Name, a.IfName, a.IP)
				}
			})
			return err
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
			_, err := callPrint(cmd, &f, "GET", "/containers", nil, printAttachments)
			return err
		},
	}
	f.register(cmd)
	return cmd
}

func printAttachments(w io.Writer, list []api.Attachment) {
	if len(list) == 0 {
		fmt.Fprintln(os.Stderr, "no containers attached")
		return
	}
	t := newTable(w, "NAME", "IP", "GATEWAY", "IFNAME", "MAC", "MTU", "NETNS")
	for _, a := range list {
		t.row(a.Name, a.IP, a.Gateway, a.IfName, a.MAC, strconv.Itoa(a.MTU), a.Netns)
	}
	t.flush()
}
