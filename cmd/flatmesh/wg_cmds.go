package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/flatmesh/flatmesh/agent/api"
)

func init() { commands = append(commands, newWGCmd) }

func newWGCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wg",
		Short: "WireGuard mode: key management",
	}
	cmd.AddCommand(newWGRotateCmd())
	return cmd
}

func newWGRotateCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new WireGuard key pair on this host and gossip its public key; peers switch over",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var res api.WGRotateResponse
			if err := f.call("POST", "/wg/rotate", struct{}{}, &res); err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new public key %s\n", res.PublicKey)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

// printWGPeers adds the WireGuard view of the peers (wireguard mode only):
// key, last handshake and bytes.
func printWGPeers(w io.Writer, peers []api.Peer) {
	var any bool
	for _, p := range peers {
		any = any || (p.WGPublicKey != "" && !p.Self)
	}
	if !any {
		return
	}
	fmt.Fprintln(w)
	t := newTable(w, "PEER", "WG PUBLIC KEY", "LAST HANDSHAKE", "RX BYTES", "TX BYTES")
	for _, p := range peers {
		if p.Self || p.WGPublicKey == "" {
			continue
		}
		hs := p.WGHandshake
		if hs == "" {
			hs = "never"
		}
		t.row(p.Name, p.WGPublicKey, hs, strconv.FormatInt(p.WGRxBytes, 10), strconv.FormatInt(p.WGTxBytes, 10))
	}
	t.flush()
}
