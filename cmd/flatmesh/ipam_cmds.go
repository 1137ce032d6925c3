package main

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/flat"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, newIPAMCmd, newRmpeerCmd, newFlatCmd)
}

func newIPAMCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "ipam",
		Short: "Show address blocks per owner, used and free",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var out api.IPAM
			if err := f.call("GET", "/ipam", nil, &out); err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			printIPAM(cmd, out)
			return nil
		},
	}
	f.register(cmd)
	cmd.AddCommand(newIPAMCheckCmd())
	return cmd
}

// printIPAM prints one line per owner, then the blocks.
func printIPAM(cmd *cobra.Command, out api.IPAM) {
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
	fmt.Fprintf(cmd.OutOrStdout(), "space %s  seed %s  map digest %s\n\n", out.CIDR, out.Seed, out.Digest)
	t := newTable(cmd.OutOrStdout(), "OWNER", "BLOCKS", "USED", "FREE", "REACHABLE")
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
			var out api.IPAMCheck
			if err := f.call("GET", "/ipam/check", nil, &out); err != nil {
				return err
			}
			if f.json {
				if err := printJSON(cmd.OutOrStdout(), out); err != nil {
					return err
				}
			} else if out.OK {
				fmt.Fprintf(cmd.OutOrStdout(), "ok: map digest %s, agreeing peers: %s\n", out.Digest, strings.Join(out.Peers, ", "))
			} else {
				for _, p := range out.Problems {
					fmt.Fprintln(cmd.OutOrStdout(), "problem:", p)
				}
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
			var out api.RemovePeerResponse
			if err := f.call("POST", "/ipam/rmpeer", api.RemovePeerRequest{Name: args[0]}, &out); err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reclaimed %d blocks of %s\n", out.Reclaimed, out.Name)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newFlatCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "flat", Short: "Flat LAN mode operations"}
	var f clientFlags
	var stateDir string
	restore := &cobra.Command{
		Use:   "restore",
		Short: "Put the NIC back as it was before the switch-over",
		Long: `Put the NIC back exactly as recorded before the flat switch-over. With an
agent running, the agent does it (and stops managing the bridge). With no agent
reachable (it crashed, or the host is stranded), the restore runs right here from
the record in --state-dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var out map[string]any
			err := f.call("POST", "/flat/restore", struct{}{}, &out)
			var unreachable *api.UnreachableError
			if errors.As(err, &unreachable) {
				fmt.Fprintf(cmd.ErrOrStderr(), "%v\nrestoring offline from %s\n", err, stateDir)
				ctx, cancel := commandContext()
				defer cancel()
				err = flat.Restore(ctx, flat.Options{StateDir: stateDir})
				out = map[string]any{"restored": err == nil, "offline": true}
			}
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "restored the NIC configuration recorded before the switch-over")
			return nil
		},
	}
	f.register(restore)
	restore.Flags().StringVar(&stateDir, "state-dir", "/var/lib/flatmesh", "agent state dir holding the record (used when no agent answers)")
	cmd.AddCommand(restore)
	return cmd
}
