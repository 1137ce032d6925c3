package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, newIPAMCmd, newRmpeerCmd)
}

func newIPAMCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "ipam",
		Short: "Show address blocks per owner, used and free",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := callPrint(cmd, &f, "GET", "/ipam", nil, printIPAM)
			return err
		},
	}
	f.register(cmd)
	cmd.AddCommand(newIPAMCheckCmd())
	return cmd
}

// printIPAM prints one line per owner, then the blocks.
func printIPAM(w io.Writer, out api.IPAM) {
	type sum struct {
		blocks, used, free int
		reachable          bool
	}
	owners := map[string]*sum{}
	for _, b := range out.Blocks {
		s := owners[b.Owner]
		if s == nil {
			s = &sum{reachable: b.Reachable}
			owners[b.Owner] = s
		}
		s.blocks++
		s.used += b.Used
		s.free += b.Free
	}
	names := make([]string, 0, len(owners))
	for n := range owners {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "space %s  seed %s  map digest %s\n\n", out.CIDR, out.Seed, out.Digest)
	t := newTable(w, "OWNER", "BLOCKS", "USED", "FREE", "REACHABLE")
	for _, n := range names {
		s := owners[n]
		owner := n
		if owner == "" {
			owner = "(free)"
		}
		t.row(owner, strconv.Itoa(s.blocks), strconv.Itoa(s.used), strconv.Itoa(s.free), strconv.FormatBool(s.reachable))
	}
	t.flush()
}

func newIPAMCheckCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check IPAM invariants; exit 1 on a problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := callPrint(cmd, &f, "GET", "/ipam/check", nil, func(w io.Writer, out api.IPAMCheck) {
				if out.OK {
					fmt.Fprintf(w, "ok: map digest %s, agreeing peers: %s\n", out.Digest, strings.Join(out.Peers, ", "))
				}
				for _, p := range out.Problems {
					fmt.Fprintln(w, "problem:", p)
				}
			})
			if err != nil {
				return err
			}
			if !out.OK {
				return exitError{code: 1}
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newRmpeerCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "rmpeer NAME",
		Short: "Reclaim the address blocks of a dead host (refused while it is alive)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := callPrint(cmd, &f, "POST", "/ipam/rmpeer", api.RemovePeerRequest{Name: args[0]}, func(w io.Writer, out api.RemovePeerResponse) {
				fmt.Fprintf(w, "reclaimed %d blocks of %s\n", out.Reclaimed, out.Name)
			})
			return err
		},
	}
	f.register(cmd)
	return cmd
}
