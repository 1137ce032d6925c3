package main

import (
	"errors"
	"fmt"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/flat"
	"github.com/flatmesh/flatmesh/internal/atomicfile"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, newFlatCmd)
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
				err = restoreOffline(stateDir)
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

// restoreOffline runs the restore in this process, holding the state dir's
// lock: an agent that holds it (alive but not answering on this socket)
// owns the kernel, and the restore is refused.
func restoreOffline(stateDir string) error {
	lock, err := atomicfile.LockDir(stateDir)
	if err != nil {
		return fmt.Errorf("not restoring offline: %w", err)
	}
	defer lock.Unlock()
	ctx, cancel := commandContext()
	defer cancel()
	return flat.Restore(ctx, flat.Options{StateDir: stateDir})
}
