// Package agent is the flatmesh daemon: configuration, lifecycle, the local
// API, and the reconcile loop that programs the data plane.
package agent

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	fmdns "github.com/flatmesh/flatmesh/agent/dns"
	"github.com/flatmesh/flatmesh/overlay"
	"github.com/spf13/pflag"
)

// DefaultPort is the gossip port (TCP and UDP). Not Docker Swarm's 7946.
const DefaultPort = 7496

// Modes are the data planes an agent can run.
var Modes = []string{overlay.ModeVXLAN, overlay.ModeWireGuard, overlay.ModeFlat}

// Config is the validated agent configuration.
type Config struct {
	ConfigFile   string
	Name         string
	Bind         netip.AddrPort
	Advertise    netip.AddrPort // never zero after Load
	Iface        string
	Mode         string
	Cluster      string
	StateDir     string
	Socket       string
	Join         []string // host:port, default port filled in
	KeyFile      string
	Insecure     bool
	LogLevel     string
	LogJSON      bool
	GossipTiming string

	CIDR              netip.Prefix
	BlockBits         int
	MTU               int // 0 = computed from the underlay
	VNI               uint32
	VXLANPort         uint16
	TxChecksumOffload string // "on", "off" or "auto"
	Masquerade        bool
	DirectRouting     bool

	FlatRange   netip.Prefix
	FlatExclude []netip.Prefix
	Bridge      string
	ProbeAddr   netip.Addr

	MetricsAddr     string // "" = no metrics
	DNS             bool   // cluster DNS on
	DNSDomain       string // zone of container names, canonical (lower case, no dots at the ends)
	DNSResolvConf   string // upstream resolvers for other names
	WGPort          uint16 // wireguard mode: listen port
	WGKeepalive     int    // wireguard mode: persistent keepalive, seconds; 0 = off
	DockerPluginDir string // "" = no Docker plugin
	DockerSocket    string // "" = do not ask dockerd for container names
	// WGDirectCleartext lets --direct-routing work in wireguard mode:
	// same-subnet peers are then reached unencrypted (direct_wg_linux.go).
	WGDirectCleartext bool
	Pprof             bool // /debug/pprof/ on the API socket (pprof.go)
}

// RegisterFlags adds every agent setting to fs.
func RegisterFlags(fs *pflag.FlagSet) { registerFlags(fs) }

// Environment is how Load reads the environment (os.Getenv in production).
type Environment func(string) string

// LoadOptions are the inputs of Load.
type LoadOptions struct {
	Flags  *pflag.FlagSet
	Getenv Environment
	// Interfaces resolves --iface to its addresses; nil means the host's.
	Interfaces func(name string) ([]netip.Prefix, error)
	Hostname   func() (string, error)
}

// Load reads the configuration with precedence HCL file < environment <
// flags, and validates it. Errors name the bad setting, its value and where
// it came from.
func Load(o LoadOptions) (Config, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Interfaces == nil {
		o.Interfaces = interfaceAddrs
	}
	if o.Hostname == nil {
		o.Hostname = os.Hostname
	}
	raw, err := gather(o.Flags, o.Getenv)
	if err != nil {
		return Config{}, err
	}
	p := parser{raw: raw}
	c := p.config()
	if p.err != nil {
		return Config{}, p.err
	}
	if err := finish(&c, raw, o); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parser converts raw settings, keeping the first error.
type parser struct {
	raw rawSettings
	err error
}

func (p *parser) fail(name, format string, args ...any) {
	if p.err == nil {
		v := p.raw[name]
		text := v.text
		if v.list != nil {
			text = strings.Join(v.list, ",")
		}
		p.err = fmt.Errorf("invalid %s %q (from %s): %s", name, text, v.src, fmt.Sprintf(format, args...))
	}
}

func (p *parser) str(name string) string { return strings.TrimSpace(p.raw[name].text) }

func (p *parser) boolean(name string) bool {
	b, err := strconv.ParseBool(p.str(name))
	if err != nil {
		p.fail(name, "want true or false")
	}
	return b
}

func (p *parser) integer(name string, lo, hi int) int {
	n, err := strconv.Atoi(p.str(name))
	if err != nil || n < lo || n > hi {
		p.fail(name, "want a whole number from %d to %d", lo, hi)
	}
	return n
}

func (p *parser) prefix(name string) netip.Prefix {
	s := p.str(name)
	if s == "" {
		return netip.Prefix{}
	}
	pf, err := netip.ParsePrefix(s)
	if err != nil {
		p.fail(name, "not a CIDR such as 10.213.0.0/16")
		return netip.Prefix{}
	}
	if pf.Masked() != pf {
		p.fail(name, "host bits are set; did you mean %s?", pf.Masked())
	}
	return pf
}

func (p *parser) addrPort(name string, def uint16) netip.AddrPort {
	s := p.str(name)
	if s == "" {
		return netip.AddrPort{}
	}
	ap, err := ParseHostPort(s, def)
	if err != nil {
		p.fail(name, "%v", err)
	}
	return ap
}

func (p *parser) config() Config {
	c := Config{
		ConfigFile:        p.str("config"),
		Name:              p.str("name"),
		Bind:              p.addrPort("bind", DefaultPort),
		Advertise:         p.addrPort("advertise", 0),
		Iface:             p.str("iface"),
		Mode:              strings.ToLower(p.str("mode")),
		Cluster:           p.str("cluster"),
		StateDir:          p.str("state_dir"),
		Socket:            p.str("socket"),
		KeyFile:           p.str("key_file"),
		Insecure:          p.boolean("insecure"),
		LogLevel:          strings.ToLower(p.str("log_level")),
		LogJSON:           p.boolean("log_json"),
		GossipTiming:      p.str("gossip_timing"),
		CIDR:              p.prefix("cidr"),
		BlockBits:         p.integer("block_size", 0, 128),
		MTU:               p.integer("mtu", 0, 65535),
		VNI:               uint32(p.integer("vni", 1, 1<<24-1)),
		VXLANPort:         uint16(p.integer("vxlan_port", 1, 65535)),
		TxChecksumOffload: strings.ToLower(p.str("tx_checksum_offload")),
		Masquerade:        p.boolean("masquerade"),
		DirectRouting:     p.boolean("direct_routing"),
		FlatRange:         p.prefix("flat_range"),
		Bridge:            p.str("bridge"),
		MetricsAddr:       p.str("metrics_addr"),
		DNS:               p.boolean("dns"),
		DNSDomain:         strings.Trim(strings.ToLower(p.str("dns_domain")), "."),
		DNSResolvConf:     p.str("dns_resolv_conf"),
		WGPort:            uint16(p.integer("wg_port", 1, 65535)),
		WGKeepalive:       p.integer("wg_persistent_keepalive", 0, 65535),
		DockerPluginDir:   p.str("docker_plugin_dir"),
		DockerSocket:      p.str("docker_socket"),
		WGDirectCleartext: p.boolean("wg_direct_cleartext"),
		Pprof:             p.boolean("pprof"),
	}
	for _, j := range p.raw["join"].list {
		ap, err := ParseHostPort(j, DefaultPort)
		if err != nil {
			p.fail("join", "%v", err)
			break
		}
		c.Join = append(c.Join, ap.String())
	}
	for _, x := range p.raw["flat_exclude"].list {
		pf, err := parseAddrOrPrefix(x)
		if err != nil {
			p.fail("flat_exclude", "%v", err)
			break
		}
		c.FlatExclude = append(c.FlatExclude, pf)
	}
	if s := p.str("probe_addr"); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			p.fail("probe_addr", "not an IP address")
		}
		c.ProbeAddr = a
	}
	p.check(c)
	return c
}

// check validates relations the parsers cannot see alone.
func (p *parser) check(c Config) {
	if !contains(Modes, c.Mode) {
		p.fail("mode", "must be one of %s", strings.Join(Modes, ", "))
	}
	if c.Cluster == "" || len(c.Cluster) > 64 {
		p.fail("cluster", "must be 1 to 64 characters")
	}
	if !contains([]string{"trace", "debug", "info", "warn", "error"}, c.LogLevel) {
		p.fail("log_level", "must be trace, debug, info, warn or error")
	}
	if !contains([]string{"on", "off", "auto"}, c.TxChecksumOffload) {
		p.fail("tx_checksum_offload", "must be on, off or auto")
	}
	if !contains([]string{"lan", "local"}, c.GossipTiming) {
		p.fail("gossip_timing", "must be lan or local")
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		p.fail("state_dir", "must be an absolute path")
	}
	if c.Socket == "" || !filepath.IsAbs(c.Socket) {
		p.fail("socket", "must be an absolute path")
	}
	if c.MTU != 0 && c.MTU < 576 {
		p.fail("mtu", "must be at least 576 (or 0 to compute it)")
	}
	if err := validMetricsAddr(c.MetricsAddr); err != nil {
		p.fail("metrics_addr", "%v", err)
	}
	p.checkDNS(c)
	p.checkWGDirect(c)
	for _, n := range []string{"docker_plugin_dir", "docker_socket"} {
		if v := p.str(n); v != "" && !filepath.IsAbs(v) {
			p.fail(n, "must be an absolute path (or empty to turn it off)")
		}
	}
	if len(c.Bridge) > 15 {
		p.fail("bridge", "an interface name has at most 15 characters")
	}
	switch c.Mode {
	case "flat":
		if c.Iface == "" {
			p.fail("iface", "flat mode needs the LAN NIC to bridge (--iface)")
		}
		if !c.FlatRange.IsValid() {
			p.fail("flat_range", "flat mode needs --flat-range, the slice of the LAN flatmesh may hand out")
		}
	default:
		if !c.CIDR.IsValid() {
			p.fail("cidr", "overlay modes need an address space")
		} else if c.BlockBits != 0 && (c.BlockBits < c.CIDR.Bits() || c.BlockBits > c.CIDR.Addr().BitLen()-2) {
			p.fail("block_size", "must lie between the CIDR's /%d and /%d", c.CIDR.Bits(), c.CIDR.Addr().BitLen()-2)
		}
	}
}

// finish fills defaults that depend on the host and checks the socket
// directory and key file before anything is created.
func finish(c *Config, raw rawSettings, o LoadOptions) error {
	if c.Name == "" {
		h, err := o.Hostname()
		if err != nil || h == "" {
			return fmt.Errorf("no --name given and the hostname is unknown: %v", err)
		}
		c.Name = h
	}
	if c.BlockBits == 0 {
		c.BlockBits = 26
		if c.Mode == "flat" {
			c.BlockBits = 28
		}
		if pf := c.IPAMPrefix(); pf.IsValid() && c.BlockBits < pf.Bits() {
			c.BlockBits = pf.Bits()
		}
	}
	if c.Bridge == "" {
		c.Bridge = "flatmesh0"
		if c.Mode == "flat" {
			c.Bridge = "fmbr0"
		}
	}
	if !c.Advertise.IsValid() {
		ap, err := advertiseFrom(*c, o.Interfaces)
		if err != nil {
			return err
		}
		c.Advertise = ap
	} else if c.Advertise.Port() == 0 {
		c.Advertise = netip.AddrPortFrom(c.Advertise.Addr(), c.Bind.Port())
	}
	if c.Advertise.Addr().IsUnspecified() {
		return fmt.Errorf("invalid advertise %q (from %s): other hosts cannot reach an unspecified address", c.Advertise, raw["advertise"].src)
	}
	if dir := filepath.Dir(c.Socket); !dirExists(dir) && c.Socket != settingDefault("socket") {
		return fmt.Errorf("invalid socket %q (from %s): directory %s does not exist", c.Socket, raw["socket"].src, dir)
	}
	if c.KeyFile == "" && !c.Insecure {
		return errors.New("no gossip key: pass --key-file (flatmesh keygen FILE writes one) or --insecure to run unencrypted")
	}
	if c.KeyFile != "" {
		if _, err := os.ReadFile(c.KeyFile); err != nil {
			return fmt.Errorf("invalid key_file %q (from %s): %w", c.KeyFile, raw["key_file"].src, err)
		}
	}
	return nil
}

// IPAMPrefix is the space IPAM hands out: the overlay CIDR or the flat range.
func (c Config) IPAMPrefix() netip.Prefix {
	if c.Mode == "flat" {
		return c.FlatRange
	}
	return c.CIDR
}

// Fingerprint hashes the settings every member must share. Members with
// another fingerprint are refused.
func (c Config) Fingerprint() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "mode=%s;space=%s;block=%d", c.Mode, c.IPAMPrefix(), c.BlockBits)
	if c.Mode == "vxlan" {
		fmt.Fprintf(h, ";vni=%d;port=%d", c.VNI, c.VXLANPort)
	}
	return h.Sum64()
}

// FingerprintText lists the fingerprinted settings for error messages.
func (c Config) FingerprintText() string {
	s := fmt.Sprintf("mode=%s space=%s block=/%d", c.Mode, c.IPAMPrefix(), c.BlockBits)
	if c.Mode == "vxlan" {
		s += fmt.Sprintf(" vni=%d vxlan_port=%d", c.VNI, c.VXLANPort)
	}
	return s
}

func advertiseFrom(c Config, ifaces func(string) ([]netip.Prefix, error)) (netip.AddrPort, error) {
	if !c.Bind.Addr().IsUnspecified() {
		return c.Bind, nil
	}
	if c.Iface == "" {
		return netip.AddrPort{}, errors.New("cannot tell which address other hosts reach this one at: pass --advertise IP or --iface NIC (flatmesh never guesses: on Vagrant every VM has 10.0.2.15 on eth0)")
	}
	pfs, err := ifaces(c.Iface)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("invalid iface %q: %w", c.Iface, err)
	}
	for _, pf := range pfs {
		if pf.Addr().Is4() && !pf.Addr().IsLinkLocalUnicast() {
			return netip.AddrPortFrom(pf.Addr(), c.Bind.Port()), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("invalid iface %q: it has no IPv4 address to advertise; pass --advertise", c.Iface)
}

func interfaceAddrs(name string) ([]netip.Prefix, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("no such interface")
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("reading addresses: %w", err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if pf, err := netip.ParsePrefix(ipn.String()); err == nil {
				out = append(out, netip.PrefixFrom(pf.Addr().Unmap(), pf.Bits()))
			}
		}
	}
	return out, nil
}

// ParseHostPort parses "IP", "IP:PORT", "[IPv6]" or "[IPv6]:PORT"; a
// missing port becomes def.
func ParseHostPort(s string, def uint16) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), def), nil
	}
	if inner, ok := strings.CutPrefix(s, "["); ok && strings.HasSuffix(inner, "]") {
		a, err := netip.ParseAddr(strings.TrimSuffix(inner, "]"))
		if err != nil || !a.Is6() || a.Is4In6() {
			return netip.AddrPort{}, fmt.Errorf("not an address IP[:PORT]: brackets hold an IPv6 address")
		}
		return netip.AddrPortFrom(a, def), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("not an address IP[:PORT]")
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("port 0 is not allowed")
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	pf, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
	}
	return pf.Masked(), nil
}

func settingDefault(name string) string {
	for _, s := range settings {
		if s.name == name {
			return s.def
		}
	}
	return ""
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkDNS validates the cluster DNS settings.
func (p *parser) checkDNS(c Config) {
	if !c.DNS {
		return
	}
	if err := fmdns.ValidName(c.DNSDomain, ""); err != nil || len(c.DNSDomain) > 63 {
		p.fail("dns_domain", "must be a DNS name such as flatmesh or cluster.local (at most 63 characters)")
	}
	if c.DNSResolvConf == "" || !filepath.IsAbs(c.DNSResolvConf) {
		p.fail("dns_resolv_conf", "must be an absolute path")
	}
}
