package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// attachResult is the part of `flatmesh attach --json` the lab keeps.
type attachResult struct {
	IP      string `json:"ip"`
	Gateway string `json:"gateway"`
	IfName  string `json:"ifname"`
	MAC     string `json:"mac"`
	MTU     int    `json:"mtu"`
	Netns   string `json:"netns"`
	Name    string `json:"name"`
}

// parseAttach decodes attach's JSON answer into c's address fields.
func parseAttach(out []byte, c *Container) error {
	var r attachResult
	if err := json.Unmarshal(out, &r); err != nil {
		return fmt.Errorf("decoding attach answer: %w", err)
	}
	ip, err := netip.ParsePrefix(r.IP)
	if err != nil {
		return fmt.Errorf("attach answered ip %q: %w", r.IP, err)
	}
	c.IP, c.IfName, c.MAC, c.MTU = ip, r.IfName, r.MAC, r.MTU
	if r.Gateway != "" {
		gw, err := netip.ParseAddr(r.Gateway)
		if err != nil {
			return fmt.Errorf("attach answered gateway %q: %w", r.Gateway, err)
		}
		c.Gateway = gw
	}
	return nil
}

// nextContainerLocked picks host h's next container: the first number whose
// namespace the lab has not recorded yet.
func (l *Lab) nextContainerLocked(h *Host) (Container, error) {
	for j := 1; j <= maxContainers; j++ {
		ns := containerNetns(l.d.Name, h.Index, j)
		if slices.Contains(l.d.Namespaces, ns) {
			continue
		}
		if len(ns) > maxNameLen {
			return Container{}, fmt.Errorf("container namespace %s would exceed %d bytes", ns, maxNameLen)
		}
		return Container{Name: containerName(h.Index, j), Host: h.Name, Netns: ns}, nil
	}
	return Container{}, fmt.Errorf("host %s has %d containers already", h.Name, maxContainers)
}

// AddContainer creates the next container namespace of host ("<lab>-h1c3")
// and attaches it through host's agent (`flatmesh attach /run/netns/NS
// --name c13 --json`). The namespace is recorded first, so Down removes it
// even when the attach fails.
func (l *Lab) AddContainer(ctx context.Context, host string) (Container, error) {
	l.mu.Lock()
	if l.isDown {
		l.mu.Unlock()
		return Container{}, errors.New("the lab is down")
	}
	h, err := l.d.hostByName(host)
	var c Container
	if err == nil {
		c, err = l.nextContainerLocked(h)
	}
	if err == nil {
		l.d.addNamespace(c.Netns)
		err = l.saveLocked()
	}
	l.mu.Unlock()
	if err != nil {
		return c, err
	}
	if err := createNetns(ctx, l.log, c.Netns); err != nil {
		return c, err
	}
	out, err := l.CLIContext(ctx, c.Host, "attach", NetnsPath(c.Netns), "--name", c.Name, "--json")
	if err != nil {
		return c, fmt.Errorf("attaching container %s: %w", c.Name, err)
	}
	if err := parseAttach(out, &c); err != nil {
		return c, fmt.Errorf("attaching container %s: %w", c.Name, err)
	}
	l.mu.Lock()
	l.d.Containers = append(l.d.Containers, c)
	err = l.saveLocked()
	l.mu.Unlock()
	l.say("attached container %s (%s) via %s: %s", c.Name, c.Netns, c.Host, c.IP)
	return c, err
}

// Container returns the container called name ("c11") or living in the
// namespace called name.
func (l *Lab) Container(name string) (Container, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.d.Containers {
		if c.Name == name || c.Netns == name {
			return c, nil
		}
	}
	return Container{}, fmt.Errorf("lab %s has no container %q", l.d.Name, name)
}
