package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// Client talks to one agent over its unix socket. It is safe for concurrent use.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
}

// Socket is the path the client dials.
func (c *Client) Socket() string { return c.socket }

// UnreachableError says that no agent answered on the socket.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	hint := ""
	switch {
	case errors.Is(e.Err, os.ErrNotExist):
		hint = " (no such socket: is the agent running? pick another with --socket or FLATMESH_SOCKET)"
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		hint = " (connection refused: the agent is not running)"
	case errors.Is(e.Err, os.ErrPermission):
		hint = " (permission denied: the socket is root-only)"
	}
	return fmt.Sprintf("cannot reach the flatmesh agent at %s: %v%s", e.Socket, e.Err, hint)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (when out is not nil). Non-2xx answers become a *StatusError
// carrying the HTTP status and the agent's message.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://flatmesh"+Version+path, rd)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return &UnreachableError{Socket: c.socket, Err: opErr.Err}
		}
		return fmt.Errorf("talking to the agent at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the agent's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &StatusError{Code: resp.StatusCode, Err: errors.New(e.Error)}
		}
		return &StatusError{Code: resp.StatusCode, Err: fmt.Errorf("agent answered %s", resp.Status)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the agent's answer: %w", err)
	}
	return nil
}
