package flat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// managerCheck looks for a network manager that would give the NIC its
// addresses back behind the bridge's back.
type managerCheck struct {
	// Root is the file system root ("" = "/"), a test hook.
	Root string
	// NMDeviceState returns `nmcli -t -f DEVICE,STATE device status`;
	// nil or an error means nmcli cannot be asked.
	NMDeviceState func() (string, error)
}

func (m managerCheck) path(p string) string {
	if m.Root == "" {
		return p
	}
	return filepath.Join(m.Root, p)
}

// check refuses a NIC (name, ifindex) that NetworkManager or
// systemd-networkd manages, with instructions to hand it over.
func (m managerCheck) check(iface string, index int) error {
	if err := m.networkManager(iface, index); err != nil {
		return err
	}
	return m.networkd(iface, index)
}

// networkManager: NM runs when /run/NetworkManager exists. It writes
// /run/NetworkManager/devices/IFINDEX with "managed=true|false"; without
// that file, nmcli's device status says "unmanaged" or not.
func (m managerCheck) networkManager(iface string, index int) error {
	if _, err := os.Stat(m.path("/run/NetworkManager")); err != nil {
		return nil
	}
	refuse := fmt.Errorf("NetworkManager manages %s and would put its addresses back on it behind the bridge: "+
		"hand it over first (`nmcli device set %s managed no`, and for good a file /etc/NetworkManager/conf.d/flatmesh.conf with "+
		"\"[keyfile]\\nunmanaged-devices=interface-name:%s\"), then start flatmesh again", iface, iface, iface)
	b, err := os.ReadFile(m.path(filepath.Join("/run/NetworkManager/devices", strconv.Itoa(index))))
	if err == nil {
		switch iniValue(b, "managed") {
		case "false":
			return nil
		case "true":
			return refuse
		}
	}
	if m.NMDeviceState != nil {
		if out, err := m.NMDeviceState(); err == nil {
			for _, line := range strings.Split(out, "\n") {
				dev, state, ok := strings.Cut(strings.TrimSpace(line), ":")
				if ok && dev == iface {
					if state == "unmanaged" {
						return nil
					}
					return refuse
				}
			}
			return nil // NM does not list the device at all
		}
	}
	return fmt.Errorf("NetworkManager is running (/run/NetworkManager exists) and flatmesh cannot tell whether it manages %s "+
		"(no device state file, no nmcli): make sure it does not (`nmcli device set %s managed no`) and remove doubt by installing nmcli", iface, iface)
}

// networkd: systemd-networkd writes /run/systemd/netif/links/IFINDEX with
// ADMIN_STATE; anything but "unmanaged" (or "linger", a link going away)
// means it configures the link.
func (m managerCheck) networkd(iface string, index int) error {
	b, err := os.ReadFile(m.path(filepath.Join("/run/systemd/netif/links", strconv.Itoa(index))))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading systemd-networkd's state of %s: %w", iface, err)
	}
	switch st := iniValue(b, "ADMIN_STATE"); st {
	case "unmanaged", "linger":
		return nil
	default:
		return fmt.Errorf("systemd-networkd manages %s (ADMIN_STATE=%s) and would put its addresses back on it behind the bridge: "+
			"hand it over first (a file /etc/systemd/network/00-flatmesh-%s.network with \"[Match]\\nName=%s\\n\\n[Link]\\nUnmanaged=yes\", "+
			"then `networkctl reload`), then start flatmesh again", iface, st, iface, iface)
	}
}

// iniValue returns the value of key in KEY=VALUE lines (sections ignored).
func iniValue(b []byte, key string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
