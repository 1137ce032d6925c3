package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, newLabCmd)
}

func newLabCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a flatmesh cluster on this machine, in network namespaces (root)",
		Long: `The lab builds hosts as network namespaces on one "switch" (a bridge in its
own namespace), runs a real flatmesh agent in each, and attaches container
namespaces through them. Everything lives under /run/flatmesh-lab/NAME and in
namespaces named NAME-*; "flatmesh lab down" removes it all.`,
	}
	cmd.AddCommand(newLabUpCmd(), newLabDownCmd(), newLabStatusCmd(), newLabPingCmd())
	return cmd
}

// labFlags are the flags that pick a lab.
type labFlags struct {
	name    string
	workDir string
}

func (f *labFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", lab.DefaultName, "lab name (namespace prefix)")
	cmd.Flags().StringVar(&f.workDir, "workdir", "", "lab directory (default /run/flatmesh-lab/NAME)")
}

func (f *labFlags) load() (*lab.Lab, error) {
	if f.workDir != "" {
		return lab.LoadDir(f.workDir)
	}
	return lab.Load(f.name)
}

func newLabUpCmd() *cobra.Command {
	var (
		f          labFlags
		o          lab.Options
		containers int
		agentArgs  []string
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build the lab and start its agents (tears down a stale lab of the same name first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Name, o.WorkDir, o.ExtraAgentArgs = f.name, f.workDir, agentArgs
			o.ContainersPerHost = containers
			if containers == 0 {
				o.ContainersPerHost = lab.NoContainers
			}
			o.Progress = cmd.ErrOrStderr()
			ctx, cancel := commandContext()
			defer cancel()
			l, err := lab.Up(ctx, o)
			if err != nil {
				return err
			}
			printLabGuide(cmd.OutOrStdout(), l)
			return nil
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.IntVar(&o.Hosts, "hosts", lab.DefaultHosts, "number of agent hosts")
	fl.StringVar(&o.Mode, "mode", lab.ModeVXLAN, "data plane: vxlan, wireguard, or flat (a LAN with a plain router machine)")
	fl.IntVar(&containers, "containers", lab.DefaultContainers, "containers per host")
	fl.BoolVar(&o.Insecure, "insecure", false, "run the agents without gossip encryption")
	fl.StringVar(&o.KeyFile, "key-file", "", "gossip key file (default: the lab writes one)")
	fl.StringVar(&o.Binary, "binary", "", "flatmesh binary the agents run (default: this one)")
	fl.StringVar(&o.LogLevel, "log-level", "info", "agents' log level")
	fl.StringVar(&o.GossipTiming, "gossip-timing", "local", "agents' gossip timing: local or lan")
	fl.DurationVar(&o.Timeout, "timeout", 0, "how long to wait for the agents (default 30s + 2s per host)")
	fl.StringArrayVar(&agentArgs, "agent-arg", nil, "extra argument for every agent (repeatable)")
	return cmd
}

// printLabGuide tells a new user where to look and how to tear down.
func printLabGuide(w io.Writer, l *lab.Lab) {
	name, cli := l.Name(), l.Binary()
	self, err := os.Executable() // the binary with the lab commands
	if err != nil {
		self = "flatmesh"
	}
	hosts, cs := l.Hosts(), l.Containers()
	fmt.Fprintf(w, "\nLab %s (%s mode) is up. Files: %s\n\n", name, l.Mode(), l.WorkDir())
	t := newTable(w, "HOST", "NETNS", "UNDERLAY", "AGENT PID", "SOCKET", "LOG")
	for _, h := range hosts {
		t.row(h.Name, h.Netns, h.Underlay.String(), strconv.Itoa(h.PID), h.Socket, h.LogFile)
	}
	pm, flat := l.Plain()
	if flat {
		t.row(pm.Name+" (router)", pm.Netns, pm.Addr.String(), "-", "-", "-")
	}
	t.flush()
	if len(cs) > 0 {
		fmt.Fprintln(w)
		t = newTable(w, "CONTAINER", "HOST", "NETNS", "IP", "GATEWAY", "MTU")
		for _, c := range cs {
			gw := "-"
			if c.Gateway.IsValid() {
				gw = c.Gateway.String()
			}
			t.row(c.Name, c.Host, c.Netns, c.IP.String(), gw, strconv.Itoa(c.MTU))
		}
		t.flush()
	}
	h1 := hosts[0]
	fmt.Fprintf(w, "\nTry:\n")
	fmt.Fprintf(w, "  %s peers --socket %s\n", cli, h1.Socket)
	fmt.Fprintf(w, "  %s status --socket %s\n", cli, h1.Socket)
	if len(cs) > 0 {
		first, last := cs[0], cs[len(cs)-1]
		fmt.Fprintf(w, "  %s containers --socket %s\n", cli, h1.Socket)
		fmt.Fprintf(w, "  ip netns exec %s ping -c 3 %s    # %s -> %s on %s\n", first.Netns, last.IP.Addr(), first.Name, last.Name, last.Host)
		if flat {
			fmt.Fprintf(w, "  ip netns exec %s ping -c 3 %s    # %s -> the LAN's router (no agent)\n", first.Netns, pm.Addr.Addr(), first.Name)
		}
		fmt.Fprintf(w, "  %s lab ping --name %s    # every container from every other one and from the other hosts\n", self, name)
	}
	fmt.Fprintf(w, "  %s lab status --name %s\n", self, name)
	fmt.Fprintf(w, "  tail -f %s\n", h1.LogFile)
	down := "make lab-down"
	if name != lab.DefaultName {
		down += " NAME=" + name
	}
	fmt.Fprintf(w, "\nTear down:\n  %s lab down --name %s    (or: %s)\n", self, name, down)
}

func newLabDownCmd() *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the lab's agents and remove its namespaces and files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.load()
			if errors.Is(err, lab.ErrNoLab) {
				// No description: remove whatever namespaces carry its name.
				ctx, cancel := commandContext()
				defer cancel()
				gone, perr := lab.Purge(ctx, f.name, cmd.ErrOrStderr())
				if perr != nil {
					return perr
				}
				fmt.Fprintf(cmd.OutOrStdout(), "no lab %s found (%v); removed %d leftover namespaces\n", f.name, err, len(gone))
				return nil
			}
			if err != nil {
				return fmt.Errorf("lab %s: %w", f.name, err)
			}
			l.SetProgress(cmd.ErrOrStderr())
			if err := l.Down(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %s is down\n", l.Name())
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newLabStatusCmd() *cobra.Command {
	var (
		f      labFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's hosts, agents and containers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.load()
			if err != nil {
				return fmt.Errorf("lab %s: %w", f.name, err)
			}
			st := l.Status()
			if asJSON {
				return printJSON(cmd.OutOrStdout(), st)
			}
			printLabStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for machines")
	return cmd
}

func printLabStatus(w io.Writer, st lab.Status) {
	fmt.Fprintf(w, "lab %s, %s mode, %s\n\n", st.Name, st.Mode, st.WorkDir)
	t := newTable(w, "HOST", "NETNS", "UNDERLAY", "AGENT", "ALIVE", "SOCKET")
	for _, h := range st.Hosts {
		agent, alive := "stopped", "-"
		if h.AgentRunning {
			agent = "pid " + strconv.Itoa(h.PID)
		}
		if !h.NetnsPresent {
			agent = "netns missing"
		}
		switch {
		case h.Error != "":
			alive = "error: " + firstLine(h.Error)
		case h.Alive >= 0:
			alive = strconv.Itoa(h.Alive)
		}
		t.row(h.Name, h.Netns, h.Underlay.String(), agent, alive, h.Socket)
	}
	t.flush()
	if len(st.Containers) > 0 {
		fmt.Fprintln(w)
		t = newTable(w, "CONTAINER", "HOST", "NETNS", "IP", "MAC")
		for _, c := range st.Containers {
			t.row(c.Name, c.Host, c.Netns, c.IP.String(), c.MAC)
		}
		t.flush()
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func newLabPingCmd() *cobra.Command {
	var (
		f      labFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "ping",
		Short: "Ping every container from every other container and from the other hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.load()
			if err != nil {
				return fmt.Errorf("lab %s: %w", f.name, err)
			}
			if len(l.Containers()) == 0 {
				return fmt.Errorf("lab %s has no containers to ping", l.Name())
			}
			ctx, cancel := commandContext()
			defer cancel()
			res := l.PingMesh(ctx)
			failed := 0
			for _, r := range res {
				if !r.OK() {
					failed++
				}
			}
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			} else {
				printPings(cmd.OutOrStdout(), res)
			}
			if failed > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d pings failed\n", failed, len(res))
				return exitError{code: 1}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "all %d pings answered\n", len(res))
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for machines")
	return cmd
}

func printPings(w io.Writer, res []lab.PingResult) {
	t := newTable(w, "FROM", "TO", "ADDRESS", "RECEIVED", "RTT", "RESULT")
	for _, r := range res {
		result := "ok"
		if !r.OK() {
			result = "FAIL"
			if r.Err != "" {
				result += ": " + firstLine(r.Err)
			}
		}
		rtt := "-"
		if r.RTT > 0 {
			rtt = r.RTT.Round(time.Microsecond).String()
		}
		t.row(r.From, r.To, r.Addr.String(), fmt.Sprintf("%d/%d", r.Received, r.Sent), rtt, result)
	}
	t.flush()
}
