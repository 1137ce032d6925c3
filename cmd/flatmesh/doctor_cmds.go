package main

import (
	"os"

	"github.com/flatmesh/flatmesh/agent"
	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/agent/doctor"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func init() { commands = append(commands, newDoctorCmd) }

// defaultConfig is read by doctor when no --config or FLATMESH_CONFIG names one.
const defaultConfig = "/etc/flatmesh/flatmesh.hcl"

func newDoctorCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this host and say what to fix (exit 1 when something is wrong)",
		Long: `Check this host: the underlay MTU against the data plane's, forwarding,
br_netfilter and the FORWARD policy, members reachable on the gossip and
data-plane ports (tried: TCP connect, UDP probe), duplicate advertise
addresses, NetworkManager or systemd-networkd managing a flat-mode NIC, clock
skew between members (ICMP timestamps), the state dir and socket
permissions, and --direct-routing: which peers it reaches directly, whether
this host's network can carry it (cloud, rp_filter), and, when it is on,
a ping to each same-subnet peer from a container address. Reads the agent's settings like the agent does (default
` + defaultConfig + `) and asks the running agent. Run as root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := commandContext()
			defer cancel()
			rep := doctor.Check(doctor.Gather(ctx, doctorOptions(cmd.Flags())))
			var err error
			if asJSON {
				err = printJSON(cmd.OutOrStdout(), rep)
			} else {
				err = rep.WriteTable(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if !rep.OK {
				return exitError{code: 1}
			}
			return nil
		},
	}
	agent.RegisterFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for machines")
	return cmd
}

// doctorOptions loads the agent's configuration; when it does not load, the
// flags' values (defaults included) still say where to look.
func doctorOptions(fs *pflag.FlagSet) doctor.GatherOptions {
	if !fs.Changed("config") && os.Getenv("FLATMESH_CONFIG") == "" {
		if _, err := os.Stat(defaultConfig); err == nil {
			_ = fs.Set("config", defaultConfig)
		}
	}
	cfg, err := agent.Load(agent.LoadOptions{Flags: fs})
	if err != nil {
		get := func(name string) string { return fs.Lookup(name).Value.String() }
		return doctor.GatherOptions{ConfigErr: err.Error(), Mode: get("mode"), Iface: get("iface"),
			Bridge: get("bridge"), StateDir: get("state-dir"), Socket: get("socket")}
	}
	return doctor.GatherOptions{
		Mode: cfg.Mode, Iface: cfg.Iface, Bridge: cfg.Bridge, StateDir: cfg.StateDir,
		Socket: cfg.Socket, DataPort: int(cfg.VXLANPort), MTUOverride: cfg.MTU,
		Client:        api.NewClient(cfg.Socket),
		DirectRouting: cfg.DirectRouting, WGDirectCleartext: cfg.WGDirectCleartext,
	}
}
