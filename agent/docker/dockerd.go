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

var _ NameSource = (*Dockerd)(nil)

// networkInspect is the part of dockerd's network inspect answer we read.
type networkInspect struct {
	Containers map[string]struct {
		Name       string
		EndpointID string
	}
}

// EndpointName returns the name of the container joined by endpointID, or
// "" while dockerd does not list it yet.
func (d *Dockerd) EndpointName(ctx context.Context, networkID, endpointID string) (string, error) {
	if err := validID("network", networkID); err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/networks/"+url.PathEscape(networkID), nil)
	if err != nil {
		return "", err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("asking dockerd at %s: %w", d.Socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", fmt.Errorf("reading dockerd's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("dockerd answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var n networkInspect
	if err := json.Unmarshal(body, &n); err != nil {
		return "", fmt.Errorf("decoding dockerd's network: %w", err)
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
