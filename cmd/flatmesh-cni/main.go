// Command flatmesh-cni is flatmesh's CNI plugin. It is installed in the CNI
// plugin directory under the name of its type, "flatmesh"
// (/opt/cni/bin/flatmesh), and is a thin client: every command asks the
// flatmesh agent on this host over its unix socket, and the agent attaches
// the container exactly as `flatmesh attach` does. See docs/cni.md.
package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

// supported lists the CNI spec versions this plugin speaks. CHECK needs
// 0.4.0; STATUS and GC need 1.1.0.
var supported = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

func main() {
	p := plugin{stderr: os.Stderr}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    p.cmdAdd,
		Del:    p.cmdDel,
		Check:  p.cmdCheck,
		GC:     p.cmdGC,
		Status: p.cmdStatus,
	}, supported, "flatmesh CNI plugin: containers on the flatmesh network, through the flatmesh agent (docs/cni.md)")
}
