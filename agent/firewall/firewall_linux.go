package firewall

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/flatmesh/flatmesh/internal/kernel"
)

// cmdTimeout bounds each iptables program run.
const cmdTimeout = 30 * time.Second

// ensureAttempts is how often Ensure and Remove re-read the tables and try
// again when a restore fails (another program changed them in between).
const ensureAttempts = 3

// mu serialises this process's read-plan-restore cycles, so two concurrent
// calls cannot both insert a missing jump.
var mu sync.Mutex

// Ensure makes the firewall match o: flatmesh's chains hold exactly the
// rules Rules(o) gives, each is jumped to first from its hook, and
// forwarding is on. It is idempotent: when everything is in place it runs
// only iptables-save and writes nothing (counters are kept). Safe for
// concurrent use; calls are serialised. It never disables br_netfilter and
// touches no chain but its own, apart from inserting and deleting its own
// jump rules in FORWARD and POSTROUTING.
func Ensure(o Options) error {
	return withMemberSets(o, func(path string) error { return ensureRules(path, o) })
}

// withMemberSets is the start of every Ensure*: o checked, the firewall's
// lock held, the namespace resolved and the member sets synced (before any
// rule that names them); then fn does the writing.
func withMemberSets(o Options, fn func(path string) error) error {
	if err := o.Validate(); err != nil {
		return err
	}
	return locked(o.NetnsPath, func(path string) error {
		if err := ensureMemberSets(path, o); err != nil {
			return err
		}
		return fn(path)
	})
}

// locked is the start of every exported call: the firewall's lock held,
// the namespace spec resolved; then fn works in it.
func locked(spec string, fn func(path string) error) error {
	mu.Lock()
	defer mu.Unlock()
	path, err := resolve(spec)
	if err != nil {
		return err
	}
	return fn(path)
}

// ensureRules is Ensure's work once the member sets are in place. Caller
// holds mu.
func ensureRules(path string, o Options) error {
	log := o.logger()
	rs := Rules(o)
	for _, f := range families(o) {
		if err := ensureFamily(path, f, rs.Chains(f), o); err != nil {
			return err
		}
		if o.Flat {
			continue // bridged frames need no IP forwarding: leave it alone
		}
		if err := changeSysctl(path, o, forwardSysctl(f), "1"); err != nil {
			return err
		}
	}
	if brNetfilter(path) {
		log.Debug("br_netfilter is loaded: bridged frames traverse FORWARD")
	}
	return nil
}

func ensureFamily(path string, f Family, want []Chain, o Options) error {
	log := o.logger()
	var lastErr error
	for range ensureAttempts {
		have, err := save(path, f)
		if err != nil {
			return err
		}
		if have.legacy {
			log.Warn("iptables-legacy tables present; their rules apply too, flatmesh manages only nf_tables ones",
				"family", f.String())
		}
		text := planNeeded(want, have, o.OnlyWhenNeeded)
		if text == "" {
			log.Debug("firewall rules in place", "family", f.String())
			return nil
		}
		if lastErr = restore(path, f, text); lastErr == nil {
			tracking := conntrackUser(have) // why the notrack chains are (not) there
			if tracking == "" {
				tracking = "nothing"
			}
			log.Info("firewall rules updated", "family", f.String(), "bridge", o.Bridge, "overlay", o.Overlay,
				"masquerade", o.Masquerade, "tracking", tracking)
			return nil
		}
		log.Debug("firewall restore failed, re-reading", "family", f.String(), "error", lastErr)
	}
	return lastErr
}

// Remove deletes flatmesh's jumps and chains, for IPv4 and IPv6, and the
// member sets once no rule names them. Only
// o.NetnsPath, o.IPv6, o.StateFile and o.Logger matter. Idempotent: with
// nothing left it writes nothing. It puts back the sysctls Ensure changed
// as recorded in o.StateFile (without one it leaves them: other software,
// Docker, may rely on them). Safe for concurrent use.
func Remove(o Options) error {
	return locked(o.NetnsPath, func(path string) error {
		if err := removeBothFamilies(path, o, func(Family) []Chain { return allChains() }); err != nil {
			return err
		}
		if err := destroyMemberSets(path); err != nil {
			return err
		}
		if err := restoreSysctls(path, o); err != nil {
			return err
		}
		o.logger().Info("firewall rules removed")
		return nil
	})
}

// removeBothFamilies removes the chains (names and tables only) for IPv4
// and IPv6. IPv6 chains may be left from a run with IPv6 on; without
// o.IPv6, a missing ip6tables or a kernel without IPv6 is no error: then
// there is nothing to remove.
func removeBothFamilies(path string, o Options, chains func(Family) []Chain) error {
	for _, f := range []Family{IPv4, IPv6} {
		err := removeChains(path, f, chains(f))
		if err != nil && (f == IPv4 || o.IPv6) {
			return err
		}
		if err != nil {
			o.logger().Debug("not removing IPv6 rules", "error", err)
		}
	}
	return nil
}

// Check reports what differs from what Ensure(o) would make: missing or
// changed chains, a missing, duplicate or not-first jump, a member set
// that is missing or holds other addresses than o.Members, forwarding off,
// and iptables-legacy tables beside the nf_tables ones. An empty list means
// all is in place; err means the state could not be read. Read-only; safe
// for concurrent use.
func Check(o Options) (problems []string, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	err = locked(o.NetnsPath, func(path string) (err error) {
		problems, err = check(path, o)
		return err
	})
	return problems, err
}

func check(path string, o Options) ([]string, error) {
	rs := Rules(o)
	out, err := checkMemberSets(path, o)
	if err != nil {
		return nil, err
	}
	for _, f := range families(o) {
		have, err := save(path, f)
		if err != nil {
			return nil, err
		}
		out = append(out, problemsNeeded(f, rs.Chains(f), have, o.OnlyWhenNeeded)...)
		if o.Flat {
			continue
		}
		key := forwardSysctl(f)
		v, err := getSysctl(path, key)
		if err != nil {
			return nil, err
		}
		if v != "1" {
			out = append(out, fmt.Sprintf("%s is %s, want 1", dotted(key), v))
		}
	}
	return out, nil
}

// families lists the address families o manages.
func families(o Options) []Family {
	if o.IPv6 {
		return []Family{IPv4, IPv6}
	}
	return []Family{IPv4}
}

// forwardSysctl is the sysctl (under /proc/sys) that turns forwarding on.
func forwardSysctl(f Family) string {
	if f == IPv6 {
		return "net/ipv6/conf/all/forwarding"
	}
	return "net/ipv4/ip_forward"
}

func dotted(key string) string { return kernel.DottedSysctl(key) }

func resolve(spec string) (string, error) {
	if spec == "" {
		return "", nil
	}
	return kernel.ResolveNetns(spec)
}

// save runs iptables-save (ip6tables-save) in the namespace and parses it.
// It lists all tables: asking for one with -t would create it. It adds
// nf_tables' own account of conntrack users; when that cannot be read the
// saved tables alone decide (a nat table counts as one), which errs
// towards installing the notrack chains.
func save(path string, f Family) (saved, error) {
	out, err := run(path, f.String()+"-save", "")
	if err != nil {
		return saved{}, err
	}
	s, err := parseSave(out)
	if err != nil {
		return saved{}, fmt.Errorf("reading %s-save output: %w", f, err)
	}
	if u, err := readNftUse(path, f); err == nil {
		s.nft = u
	}
	return s, nil
}

// restore feeds text to iptables-restore --noflush: one transaction per
// table, so a failure changes nothing.
func restore(path string, f Family, text string) error {
	_, err := run(path, f.String()+"-restore", text, "-w", "5", "--noflush")
	if err != nil {
		return fmt.Errorf("%w\ninput was:\n%s", err, text)
	}
	return nil
}

// run starts an iptables program inside the namespace at path ("" = ours)
// with stdin and returns its standard output. The child inherits the
// namespace of the locked thread that starts it.
func run(path, prog, stdin string, args ...string) (string, error) {
	bin, err := exec.LookPath(prog)
	if err != nil {
		return "", fmt.Errorf("%s not found (install the Debian package iptables): %w", prog, err)
	}
	var stdout, stderr bytes.Buffer
	err = kernel.InNetns(path, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		return cmd.Run()
	})
	if err != nil {
		where := "the agent's namespace"
		if path != "" {
			where = path
		}
		return "", fmt.Errorf("running %s %s in %s: %w: %s", prog, strings.Join(args, " "), where, err,
			strings.TrimSpace(stderr.String()))
	}
	if strings.Contains(stderr.String(), legacyWarning) {
		stdout.WriteString("\n# Warning: " + legacyWarning + "\n")
	}
	return stdout.String(), nil
}

// setSysctl and getSysctl are the kernel package's, in the namespace at path.
func setSysctl(path, key, value string) error { return kernel.SetSysctlAt(path, key, value) }

func getSysctl(path, key string) (string, error) { return kernel.SysctlAt(path, key) }

// brNetfilter reports whether br_netfilter is loaded (it registers
// /proc/sys/net/bridge).
func brNetfilter(path string) bool { return kernel.HasSysctl(path, "net/bridge") }
