package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/spf13/cobra"
)

const defaultSocket = "/run/flatmesh/flatmesh.sock"

// clientFlags are the flags every command that talks to the agent shares.
type clientFlags struct {
	socket string
	json   bool
}

func (f *clientFlags) register(cmd *cobra.Command) {
	def := defaultSocket
	if s := os.Getenv("FLATMESH_SOCKET"); s != "" {
		def = s
	}
	cmd.Flags().StringVar(&f.socket, "socket", def, "agent socket (env FLATMESH_SOCKET)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON for machines")
}

func (f *clientFlags) client() *api.Client { return api.NewClient(f.socket) }

// commandContext is cancelled by SIGINT/SIGTERM so long calls stop cleanly.
func commandContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// call runs one API request with a context that Ctrl-C cancels.
func (f *clientFlags) call(method, path string, body, out any) error {
	ctx, cancel := commandContext()
	defer cancel()
	return f.client().Do(ctx, method, path, body, out)
}

// callPrint is the shape of every command that asks the agent something:
// one API call, then the answer as JSON (--json) or, for people, through
// human. It returns the answer for commands that decide their exit status
// from it.
func callPrint[T any](cmd *cobra.Command, f *clientFlags, method, path string, body any, human func(w io.Writer, out T)) (T, error) {
	var out T
	if err := f.call(method, path, body, &out); err != nil {
		return out, err
	}
	if f.json {
		return out, printJSON(cmd.OutOrStdout(), out)
	}
	human(cmd.OutOrStdout(), out)
	return out, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints aligned columns for people.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() { _ = t.tw.Flush() }
