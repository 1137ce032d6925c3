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
func (n *NS) SetSysctl(key, value string) error {
	p, err := sysctlPath(key)
	if err != nil {
		return err
	}
	err = n.Do(func() error { return os.WriteFile(p, []byte(value), 0o644) })
	if err != nil {
		return fmt.Errorf("setting sysctl %s=%s in %s: %w", key, value, n, err)
	}
	return nil
}

// Sysctl reads the sysctl key inside ns, without the trailing newline.
func (n *NS) Sysctl(key string) (string, error) {
	p, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var b []byte
	err = n.Do(func() error {
		var rerr error
		b, rerr = os.ReadFile(p)
		return rerr
	})
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s in %s: %w", key, n, err)
	}
	return strings.TrimSpace(string(b)), nil
}
