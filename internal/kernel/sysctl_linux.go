package kernel

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// sysctlPath maps a key to its file under /proc/sys. Keys in slash form
// ("net/ipv4/conf/flatmesh.vx/rp_filter") are taken as they are, which is
// the way to name an interface that has a dot in its name; dotted keys
// ("net.ipv4.ip_forward") have their dots turned into slashes.
func sysctlPath(key string) (string, error) {
	if key == "" || strings.Contains(key, "..") || strings.HasPrefix(key, "/") {
		return "", fmt.Errorf("invalid sysctl key %q", key)
	}
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	return filepath.Join("/proc/sys", key), nil
}

// SetSysctl writes value to the sysctl key inside ns (network sysctls are
// per namespace; /proc/sys/net follows the writing thread's namespace).
// Writing the value it already has is harmless.
func (n *NS) SetSysctl(key, value string) error { return SetSysctlAt(n.Path, key, value) }

// Sysctl reads the sysctl key inside ns, without the trailing newline.
func (n *NS) Sysctl(key string) (string, error) { return SysctlAt(n.Path, key) }

// SetSysctlAt writes value to the sysctl key inside the namespace at
// netnsPath ("" = the caller's), only when it differs from the current
// value (so a read-only /proc/sys with the right value is no error).
func SetSysctlAt(netnsPath, key, value string) error {
	cur, err := SysctlAt(netnsPath, key)
	if err != nil {
		return err
	}
	if cur == value {
		return nil
	}
	p, err := sysctlPath(key)
	if err != nil {
		return err
	}
	err = InNetns(netnsPath, func() error { return os.WriteFile(p, []byte(value), 0o644) })
	if err != nil {
		return fmt.Errorf("setting sysctl %s=%s in %s: %w", DottedSysctl(key), value, where(netnsPath), err)
	}
	return nil
}

// SysctlAt reads the sysctl key inside the namespace at netnsPath ("" =
// the caller's), without the trailing newline.
func SysctlAt(netnsPath, key string) (string, error) {
	p, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var b []byte
	err = InNetns(netnsPath, func() error {
		var rerr error
		b, rerr = os.ReadFile(p)
		return rerr
	})
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s in %s: %w", DottedSysctl(key), where(netnsPath), err)
	}
	return strings.TrimSpace(string(b)), nil
}

// HasSysctl reports whether the sysctl key (a file or a directory, such as
// net/bridge, which br_netfilter registers) exists in the namespace.
func HasSysctl(netnsPath, key string) bool {
	p, err := sysctlPath(key)
	if err != nil {
		return false
	}
	present := false
	_ = InNetns(netnsPath, func() error {
		_, err := os.Stat(p)
		present = err == nil
		return nil
	})
	return present
}

// DottedSysctl spells a slash-form key the way sysctl(8) does, for messages.
func DottedSysctl(key string) string { return strings.ReplaceAll(key, "/", ".") }

func where(netnsPath string) string {
	if netnsPath == "" {
		return "host namespace"
	}
	return "namespace " + netnsPath
}
