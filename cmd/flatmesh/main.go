// Command flatmesh is the one binary of flatmesh: the agent daemon and the
// CLI that talks to it over its unix socket. Commands only parse input and
// call the agent package or the API client.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries an exit status without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "flatmesh",
		Short:         "Multi-host container networking without NAT",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, add := range commands {
		root.AddCommand(add())
	}
	return root
}

// commands is filled by the init functions of the files of this package, one
// file per command group, so that each group lives in its own file.
var commands []func() *cobra.Command

func main() {
	if err := newRootCmd().Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "flatmesh:", err)
		os.Exit(1)
	}
}
