//go:build tools

// Package main pins the modules the packages of this repository use, so that
// go mod tidy keeps them while helpers build the packages that import them.
package main

import (
	_ "github.com/hashicorp/go-hclog"
	_ "github.com/hashicorp/hcl/v2/hclsimple"
	_ "github.com/hashicorp/memberlist"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "golang.zx2c4.com/wireguard/wgctrl"
)
