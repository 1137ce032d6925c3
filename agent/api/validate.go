package api

import "fmt"

// Limits on what a request may carry. The API is root-only, but a script
// gone wrong must get a clear refusal, not a stuck or bloated agent.
const (
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes = 64 << 10
	// MaxNameLen bounds a container name.
	MaxNameLen = 128
	// MaxJoinAddrs bounds the addresses of one join request.
	MaxJoinAddrs = 64
	// MaxTargetLen bounds a namespace spec or detach target (a path).
	MaxTargetLen = 4096
)

// ValidateName checks a container name given by a caller: 1 to MaxNameLen
// printable ASCII characters from letters, digits and "-_.:/@+", starting
// with a letter or a digit.
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("container name must be 1 to %d characters, got %d", MaxNameLen, len(name))
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !ok && i > 0 {
			switch r {
			case '-', '_', '.', ':', '/', '@', '+':
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("container name %q: character %q at %d is not allowed (letters, digits, and -_.:/@+ after the first)", name, r, i)
		}
	}
	return nil
}

// ValidateTarget checks a namespace spec or detach target: not empty, not
// huge, no control characters.
func ValidateTarget(what, s string) error {
	if s == "" {
		return fmt.Errorf("no %s given", what)
	}
	if len(s) > MaxTargetLen {
		return fmt.Errorf("%s is %d bytes long; at most %d", what, len(s), MaxTargetLen)
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("%s %q contains a control character", what, s)
		}
	}
	return nil
}

// ValidateJoin checks the size of a join request's address list.
func ValidateJoin(addrs []string) error {
	switch {
	case len(addrs) == 0:
		return fmt.Errorf("no address to join")
	case len(addrs) > MaxJoinAddrs:
		return fmt.Errorf("%d addresses to join; at most %d in one request", len(addrs), MaxJoinAddrs)
	}
	return nil
}
