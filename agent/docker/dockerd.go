package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Dockerd asks a dockerd over its API socket which container an endpoint
// belongs to (GET /networks/ID, what `docker network inspect` shows).
type Dockerd struct {
	Socket string // e.g. /run/docker.sock
	client *http.Client
}

// NewDockerd returns a client of the dockerd at socket.
func NewDockerd(socket string) *Dockerd {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Dockerd{Socket: socket, client: &http.Client{Transport: tr}}
}

var (
	_ NameSource     = (*Dockerd)(nil)
	_ EndpointLister = (*Dockerd)(nil)
)

// networkInspect is the part of dockerd's network inspect answer we read.
type networkInspect struct {
	Containers map[string]struct {
		Name       string
		EndpointID string
	}
}

// get fetches path from dockerd's API and decodes the JSON answer into v.
func (d *Dockerd) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("asking dockerd at %s: %w", d.Socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("reading dockerd's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("dockerd answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decoding dockerd's answer to %s: %w", path, err)
	}
	return nil
}

// Endpoints lists the endpoint ids of every flatmesh network dockerd has.
func (d *Dockerd) Endpoints(ctx context.Context) (map[string]bool, error) {
	var nets []struct {
		ID     string `json:"Id"`
		Driver string
	}
	if err := d.get(ctx, "/networks", &nets); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, n := range nets {
		if n.Driver != Name {
			continue
		}
		if err := validID("network", n.ID); err != nil {
			return nil, err
		}
		var ni networkInspect
		if err := d.get(ctx, "/networks/"+url.PathEscape(n.ID), &ni); err != nil {
			return nil, err
		}
		for _, c := range ni.Containers {
			out[c.EndpointID] = true
		}
	}
	return out, nil
}

// EndpointName returns the name of the container joined by endpointID, or
// "" while dockerd does not list it yet.
func (d *Dockerd) EndpointName(ctx context.Context, networkID, endpointID string) (string, error) {
	if err := validID("network", networkID); err != nil {
		return "", err
	}
	var n networkInspect
	if err := d.get(ctx, "/networks/"+url.PathEscape(networkID), &n); err != nil {
		return "", err
	}
	for _, c := range n.Containers {
		if c.EndpointID == endpointID {
			return sanitizeName(c.Name), nil
		}
	}
	return "", nil
}

// sanitizeName keeps a container name printable and bounded.
func sanitizeName(s string) string {
	s = strings.TrimPrefix(s, "/")
	if len(s) > 128 {
		s = s[:128]
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' {
			return -1
		}
		return r
	}, s)
}
