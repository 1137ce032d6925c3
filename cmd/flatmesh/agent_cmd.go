package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/flatmesh/flatmesh/agent"
	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newAgentCmd) }

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the flatmesh agent in the foreground (systemd runs it)",
		Long: `Run the agent. Settings come from an HCL file (--config), the environment
(FLATMESH_<NAME>, e.g. FLATMESH_STATE_DIR) and flags, in that order of precedence.
SIGTERM and SIGINT leave the cluster gracefully and exit 0; SIGHUP reloads the log level.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := agent.Load(agent.LoadOptions{Flags: cmd.Flags()})
			if err != nil {
				return err
			}
			log := hclog.New(&hclog.LoggerOptions{
				Name:       "flatmesh",
				Level:      hclog.LevelFromString(cfg.LogLevel),
				JSONFormat: cfg.LogJSON,
				Output:     os.Stderr,
			})
			a, err := agent.New(agent.Options{Config: cfg, Logger: log, Version: buildVersion()})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					next, err := agent.Load(agent.LoadOptions{Flags: cmd.Flags()})
					if err != nil {
						log.Error("reload refused: the configuration is invalid", "error", err)
						continue
					}
					a.Reload(next)
				}
			}()
			return a.Run(ctx)
		},
	}
	agent.RegisterFlags(cmd.Flags())
	// `flatmesh agent join PEER`, as the project describes it to its users,
	// is `flatmesh join PEER`.
	cmd.AddCommand(newJoinCmd())
	return cmd
}
