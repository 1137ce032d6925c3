package agent

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spf13/pflag"
	"github.com/zclconf/go-cty/cty"
)

// kind is how a setting's text is read.
type kind int

const (
	kString kind = iota
	kBool
	kInt
	kList // repeatable flag, comma list in env, list of strings in HCL
)

// setting is one agent setting. The one table below drives the flag, the
// environment variable FLATMESH_<NAME> and the HCL attribute <name>, so the
// three can never drift apart.
type setting struct {
	name  string // HCL attribute; flag is name with '-' for '_'
	kind  kind
	def   string
	usage string
}

func (s setting) flag() string { return strings.ReplaceAll(s.name, "_", "-") }
func (s setting) env() string  { return "FLATMESH_" + strings.ToUpper(s.name) }

var settings = []setting{
	{"config", kString, "", "HCL configuration file"},
	{"name", kString, "", "node name, unique in the cluster (default: the hostname)"},
	{"bind", kString, "0.0.0.0", "gossip bind address IP[:PORT]"},
	{"advertise", kString, "", "address IP[:PORT] other hosts reach this one at (default: the first IPv4 of --iface)"},
	{"iface", kString, "", "underlay interface (flat mode: the NIC to bridge)"},
	{"mode", kString, "vxlan", "data plane: vxlan, wireguard or flat"},
	{"cluster", kString, "flatmesh", "cluster name; agents of other clusters are refused"},
	{"state_dir", kString, "/var/lib/flatmesh", "directory for persistent state"},
	{"socket", kString, "/run/flatmesh/flatmesh.sock", "unix socket of the local API"},
	{"join", kList, "", "address ADDR[:PORT] of a member to join (repeatable, comma lists)"},
	{"key_file", kString, "", "gossip encryption key file (flatmesh keygen writes one)"},
	{"insecure", kBool, "false", "run without gossip encryption"},
	{"log_level", kString, "info", "log level: trace, debug, info, warn, error"},
	{"log_json", kBool, "false", "log in JSON"},
	{"gossip_timing", kString, "lan", "gossip timing profile: lan, or local for labs on one machine"},
	{"cidr", kString, "10.213.0.0/16", "overlay address space (vxlan, wireguard)"},
	{"block_size", kInt, "0", "IPAM block prefix length (default 26 for overlays, 28 for flat)"},
	{"mtu", kInt, "0", "container MTU override (default: underlay MTU minus the encapsulation)"},
	{"vni", kInt, "4213", "VXLAN network identifier"},
	{"vxlan_port", kInt, "4789", "VXLAN UDP port"},
	{"tx_checksum_offload", kString, "auto", "tx checksum offload on the VXLAN device: on, off, or auto (off on kernels before 5.7, which have the \"63 second delay\" bug)"},
	{"masquerade", kBool, "true", "masquerade container traffic leaving the cluster (overlay modes)"},
	{"direct_routing", kBool, "false", "vxlan (wireguard: with --wg-direct-cleartext): route to peers on this host's underlay subnets without encapsulation (only where the LAN delivers container source addresses: not on most clouds)"},
	{"flat_range", kString, "", "flat mode: slice of the LAN flatmesh may hand out (CIDR)"},
	{"flat_exclude", kList, "", "flat mode: addresses or CIDRs never handed out (routers, DHCP pools)"},
	{"bridge", kString, "", "bridge name (default flatmesh0; flat mode: fmbr0)"},
	{"probe_addr", kString, "", "flat mode: address to check after the switch-over when there is no default gateway"},
	{"metrics_addr", kString, "", "serve Prometheus metrics on IP:PORT (off when empty; keep it on loopback or a management network)"},
	{"dns", kBool, "true", "cluster DNS: answer container names on the gateway addresses (port 53), forward the rest upstream"},
	{"dns_domain", kString, "flatmesh", "cluster DNS domain: containers are NAME.<domain>"},
	{"dns_resolv_conf", kString, "/etc/resolv.conf", "file the upstream resolvers for other names are read from (re-read when it changes)"},
	{"wg_port", kInt, "51820", "wireguard mode: UDP listen port of the WireGuard device"},
	{"wg_persistent_keepalive", kInt, "0", "wireguard mode: persistent keepalive in seconds (0 = off; set it behind NAT)"},
	{"docker_plugin_dir", kString, "/run/docker/plugins", "directory for the Docker network+IPAM plugin socket flatmesh.sock (empty: no Docker plugin)"},
	{"docker_socket", kString, "/run/docker.sock", "dockerd's API socket, read to name Docker containers in listings (empty: do not ask)"},
	{"wg_direct_cleartext", kBool, "false", "wireguard mode: with --direct-routing, send container traffic to peers on this host's underlay subnets unencrypted (cleartext on the LAN); without it wireguard mode refuses --direct-routing"},
	{"pprof", kBool, "false", "debugging: serve Go's pprof profiles at /debug/pprof/ on the API's unix socket (never on TCP)"},
}

// source says where a value came from, so errors can point at it.
type source string

// value is a setting's text and where it came from.
type value struct {
	text string
	list []string
	src  source
}

// rawSettings holds every setting's text after applying precedence.
type rawSettings map[string]value

// registerFlags adds every setting as a flag.
func registerFlags(fs *pflag.FlagSet) {
	for _, s := range settings {
		switch s.kind {
		case kBool:
			fs.Bool(s.flag(), s.def == "true", s.usage)
		case kList:
			fs.StringSlice(s.flag(), nil, s.usage)
		default:
			fs.String(s.flag(), s.def, s.usage)
		}
	}
}

// gather applies precedence: defaults < HCL file < environment < flags.
func gather(fs *pflag.FlagSet, getenv func(string) string) (rawSettings, error) {
	raw := rawSettings{}
	for _, s := range settings {
		raw[s.name] = value{text: s.def, src: "default"}
	}
	byName := map[string]setting{}
	for _, s := range settings {
		byName[s.name] = s
	}
	cfgFile := raw["config"].text
	if v := getenv("FLATMESH_CONFIG"); v != "" {
		cfgFile = v
	}
	if f := fs.Lookup("config"); f != nil && f.Changed {
		cfgFile = f.Value.String()
	}
	if cfgFile != "" {
		if err := readHCL(cfgFile, byName, raw); err != nil {
			return nil, err
		}
		raw["config"] = value{text: cfgFile, src: "flag"}
	}
	for _, s := range settings {
		if v := getenv(s.env()); v != "" {
			raw[s.name] = fromText(s, v, source("environment "+s.env()))
		}
		if f := fs.Lookup(s.flag()); f != nil && f.Changed {
			if s.kind == kList {
				l, _ := fs.GetStringSlice(s.flag())
				raw[s.name] = value{list: l, src: source("flag --" + s.flag())}
			} else {
				raw[s.name] = value{text: f.Value.String(), src: source("flag --" + s.flag())}
			}
		}
	}
	return raw, nil
}

func fromText(s setting, text string, src source) value {
	if s.kind == kList {
		return value{list: splitList([]string{text}), src: src}
	}
	return value{text: text, src: src}
}

// splitList flattens repeated and comma-separated items, dropping blanks.
func splitList(items []string) []string {
	var out []string
	for _, it := range items {
		for _, p := range strings.Split(it, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// readHCL reads top-level attributes of an HCL file into raw. Unknown
// attributes and blocks are errors, so typos do not pass silently.
func readHCL(path string, byName map[string]setting, raw rawSettings) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config file: %w", err)
	}
	file, diags := hclsyntax.ParseConfig(data, path, hcl.InitialPos)
	if diags.HasErrors() {
		return fmt.Errorf("parsing config file: %s", diags.Error())
	}
	body := file.Body.(*hclsyntax.Body)
	if len(body.Blocks) > 0 {
		b := body.Blocks[0]
		return fmt.Errorf("%s: unexpected block %q: the config file has only attributes", b.DefRange().String(), b.Type)
	}
	names := make([]string, 0, len(body.Attributes))
	for n := range body.Attributes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		attr := body.Attributes[n]
		s, ok := byName[n]
		if !ok || n == "config" {
			return fmt.Errorf("%s: unknown setting %q", attr.NameRange.String(), n)
		}
		v, diags := attr.Expr.Value(nil)
		if diags.HasErrors() {
			return fmt.Errorf("%s: %s", attr.NameRange.String(), diags.Error())
		}
		src := source("config " + attr.NameRange.String())
		val, err := ctyText(s, v)
		if err != nil {
			return fmt.Errorf("%s: setting %q: %w", attr.NameRange.String(), n, err)
		}
		val.src = src
		raw[n] = val
	}
	return nil
}

// ctyText turns an HCL value into the setting's text form.
func ctyText(s setting, v cty.Value) (value, error) {
	if v.IsNull() {
		return value{}, fmt.Errorf("null value")
	}
	switch s.kind {
	case kBool:
		if v.Type() != cty.Bool {
			return value{}, fmt.Errorf("want true or false, got %s", v.Type().FriendlyName())
		}
		return value{text: fmt.Sprint(v.True())}, nil
	case kInt:
		if v.Type() != cty.Number {
			return value{}, fmt.Errorf("want a number, got %s", v.Type().FriendlyName())
		}
		return value{text: v.AsBigFloat().Text('f', -1)}, nil
	case kList:
		if v.Type() == cty.String {
			return value{list: splitList([]string{v.AsString()})}, nil
		}
		if !v.Type().IsListType() && !v.Type().IsTupleType() {
			return value{}, fmt.Errorf("want a list of strings, got %s", v.Type().FriendlyName())
		}
		var out []string
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.Type() != cty.String {
				return value{}, fmt.Errorf("want a list of strings, got an element of type %s", e.Type().FriendlyName())
			}
			out = append(out, e.AsString())
		}
		return value{list: splitList(out)}, nil
	default:
		if v.Type() != cty.String {
			return value{}, fmt.Errorf("want a string, got %s", v.Type().FriendlyName())
		}
		return value{text: v.AsString()}, nil
	}
}
