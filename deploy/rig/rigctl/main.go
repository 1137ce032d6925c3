// Command rigctl drives the systemd rig (make rig, make rig-down): see
// package rig.
//
//	rigctl rootfs                      build (or find) the cached rootfs
//	rigctl up --deb FILE [--name N]    boot the machines, install and start flatmesh
//	rigctl exec [--name N] MACHINE CMD...   run a command inside a machine
//	rigctl down [--name N]             remove everything the rig made
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/flatmesh/flatmesh/deploy/rig"
	"github.com/hashicorp/go-hclog"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "rigctl:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: rigctl rootfs|up|down [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	name := fs.String("name", rig.DefaultName, "rig name (namespace prefix)")
	deb := fs.String("deb", "", "the flatmesh .deb to install (make deb)")
	machines := fs.Int("machines", rig.DefaultMachines, "machines to boot")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "rigctl", Level: hclog.Info, Output: os.Stderr})
	ctx := context.Background()
	switch args[0] {
	case "rootfs":
		start := time.Now()
		dir, built, err := rig.EnsureRootfs(ctx, log, rig.DefaultCacheDir, rig.Rootfs{})
		if err != nil {
			return err
		}
		fmt.Printf("rootfs %s (built: %v, %s)\n", dir, built, time.Since(start).Round(100*time.Millisecond))
		return nil
	case "up":
		if *deb == "" {
			return errors.New("up needs --deb FILE (make rig builds one)")
		}
		abs, err := filepath.Abs(*deb)
		if err != nil {
			return err
		}
		r, err := rig.Boot(ctx, rig.Options{Name: *name, Machines: *machines, Deb: abs, Logger: log, Progress: os.Stdout})
		if err != nil {
			return err
		}
		if err := r.Provision(ctx); err != nil {
			return fmt.Errorf("%w (the machines are still up: make rig-down removes them)", err)
		}
		t := r.Timings()
		fmt.Printf("rig %s is up: rootfs %s (built now: %v), boot %v, agent ready %v\n",
			*name, t.Rootfs.Round(time.Millisecond), t.RootfsBuilt, t.Boot, t.AgentReady)
		for _, m := range r.Machines() {
			fmt.Printf("  %s  %s  netns %s\n", m.Name, m.Addr, m.Netns)
		}
		fmt.Printf("inside a machine: go run ./deploy/rig/rigctl exec --name %s m1 systemctl status flatmesh\n", *name)
		out, _ := r.Exec(ctx, "m1", "flatmesh", "peers")
		fmt.Print(string(out))
		return nil
	case "exec":
		if fs.NArg() < 2 {
			return errors.New("usage: rigctl exec [--name N] MACHINE CMD...")
		}
		r, err := rig.Load(*name)
		if err != nil {
			return err
		}
		out, err := r.Exec(ctx, fs.Arg(0), fs.Args()[1:]...)
		os.Stdout.Write(out)
		if err != nil {
			return fmt.Errorf("exec in %s failed", fs.Arg(0))
		}
		return nil
	case "down":
		err := rig.DownDir(ctx, filepath.Join(rig.DefaultWorkRoot, *name), os.Stdout)
		if errors.Is(err, rig.ErrNoRig) {
			fmt.Printf("no rig %s\n", *name)
			return nil
		}
		return err
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
}
