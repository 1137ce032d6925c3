package kernel

import (
	"fmt"
	"strconv"
	"strings"
)

// NetnsDir is where `ip netns` pins named network namespaces.
const NetnsDir = "/run/netns"

// netnsSpecKind tells how a namespace spec was written.
type netnsSpecKind int

const (
	specPath netnsSpecKind = iota // a file path
	specPID                       // a process id
	specName                      // a name under NetnsDir
)

// parseNetnsSpec turns a user's namespace spec into the file that holds the
// namespace: a path is kept ("/run/netns/x", "/proc/123/ns/net"), a number is
// a PID (/proc/PID/ns/net), anything else is a name under NetnsDir.
func parseNetnsSpec(spec string) (netnsSpecKind, string, error) {
	switch {
	case spec == "":
		return 0, "", fmt.Errorf("no network namespace given")
	case strings.ContainsRune(spec, '/'):
		return specPath, spec, nil
	}
	if pid, err := strconv.Atoi(spec); err == nil {
		if pid <= 0 {
			return 0, "", fmt.Errorf("network namespace %q: pid must be positive", spec)
		}
		return specPID, fmt.Sprintf("/proc/%d/ns/net", pid), nil
	}
	if spec == "." || spec == ".." {
		return 0, "", fmt.Errorf("network namespace name %q is not allowed", spec)
	}
	return specName, NetnsDir + "/" + spec, nil
}

// NetnsID is a namespace's identity: the device and inode of its nsfs file.
// Two paths (/run/netns/x, /proc/PID/ns/net) name the same namespace exactly
// when their NetnsIDs are equal.
type NetnsID struct {
	Dev uint64
	Ino uint64
}

// String is the identity as "netns:DEV:INODE".
func (id NetnsID) String() string { return fmt.Sprintf("netns:%d:%d", id.Dev, id.Ino) }
