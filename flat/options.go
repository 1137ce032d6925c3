package flat

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultBridge is the bridge flat mode creates when Options.Bridge is empty
// (the agent's config uses the same default for --mode flat).
const DefaultBridge = "fmbr0"

// DefaultVerifyTimeout is how long the gateway has to answer after a
// switch-over before it is rolled back.
const DefaultVerifyTimeout = 5 * time.Second

// RecordFile is the name, inside Options.StateDir, of the file that holds
// the NIC's original configuration while the bridge is in place.
const RecordFile = "flat-original.json"

// maxIfName is the longest interface name Linux accepts (IFNAMSIZ - 1).
const maxIfName = 15

// Options configures a switch-over or a restore.
type Options struct {
	// Iface is the LAN NIC to enslave (required).
	Iface string
	// Bridge is the bridge to create or adopt; DefaultBridge when empty.
	Bridge string
	// Range is the slice of the LAN flatmesh may hand out (IPv4). It must sit
	// inside the NIC's subnet and leave out the host's addresses and the
	// gateway, unless Exclude covers them.
	Range netip.Prefix
	// Exclude lists parts of Range that are never handed out (routers, DHCP
	// pools). Each must overlap Range.
	Exclude []netip.Prefix
	// ProbeAddr is an IPv4 LAN address that answers ARP, used to verify the
	// switch-over when the NIC has no IPv4 default gateway.
	ProbeAddr netip.Addr
	// StateDir holds RecordFile (required by SwitchOver and Restore).
	StateDir string
	// VerifyTimeout bounds the gateway check; DefaultVerifyTimeout when 0.
	VerifyTimeout time.Duration
	// Logger receives progress; a null logger when nil.
	Logger hclog.Logger
	// NetnsPath is the network namespace to work in (a file such as
	// /run/netns/NAME); empty means the caller's own namespace.
	NetnsPath string
	// FailAfterStep is a test hook: when > 0, the switch-over fails on
	// purpose right after applying that many plan steps, which exercises the
	// rollback. Never set it in production.
	FailAfterStep int
	// CrashAfterStep and CrashAfterRestoreStep are test hooks that stand
	// for the process dying: when > 0, SwitchOver (or the restore inside a
	// rollback or Restore) stops right after that many steps and returns
	// ErrCrashHook without rolling back or touching the record, exactly as
	// a SIGKILL would leave things. Never set them in production.
	CrashAfterStep        int
	CrashAfterRestoreStep int
	// Root is where the state of NetworkManager and systemd-networkd is
	// looked for ("" = "/"); a test hook for a fake root.
	Root string
}

// withDefaults fills the defaults of empty fields.
func (o Options) withDefaults() Options {
	if o.Bridge == "" {
		o.Bridge = DefaultBridge
	}
	if o.VerifyTimeout <= 0 {
		o.VerifyTimeout = DefaultVerifyTimeout
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return o
}

// checkIfName validates an interface name as the kernel would.
func checkIfName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("no %s given", what)
	case len(name) > maxIfName:
		return fmt.Errorf("%s %q is too long: an interface name has at most %d characters", what, name, maxIfName)
	case name == "." || name == "..":
		return fmt.Errorf("%s %q is not a valid interface name", what, name)
	case strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("%s %q is not a valid interface name (no '/', ':' or spaces)", what, name)
	}
	return nil
}

// checkRangeShape validates Range and Exclude on their own (without the
// host's configuration): IPv4, valid, exclusions inside the range.
func checkRangeShape(o Options) error {
	if !o.Range.IsValid() {
		return fmt.Errorf("no flat range given: flat mode needs the slice of the LAN it may hand out")
	}
	if !o.Range.Addr().Is4() {
		return fmt.Errorf("flat range %s is not IPv4: flat mode hands out IPv4 addresses (ARP-probed)", o.Range)
	}
	if o.Range.Masked() != o.Range {
		return fmt.Errorf("flat range %s has host bits set: did you mean %s?", o.Range, o.Range.Masked())
	}
	for _, x := range o.Exclude {
		if !x.IsValid() || !x.Addr().Is4() {
			return fmt.Errorf("flat exclude %s is not an IPv4 prefix", x)
		}
		if !x.Overlaps(o.Range) {
			return fmt.Errorf("flat exclude %s lies outside the flat range %s", x, o.Range)
		}
	}
	if o.ProbeAddr.IsValid() && !o.ProbeAddr.Is4() {
		return fmt.Errorf("probe address %s is not IPv4: the switch-over is verified with ARP", o.ProbeAddr)
	}
	return nil
}

// excluded reports whether a is covered by one of the exclusions.
func excluded(a netip.Addr, ex []netip.Prefix) bool {
	for _, x := range ex {
		if x.Contains(a) {
			return true
		}
	}
	return false
}
