package kernel

import (
	"strconv"
	"strings"
)

// ParseNetnsID parses what NetnsID.String wrote ("netns:DEV:INODE"); ok is
// false for anything else (a path, a CNI or Docker ID).
func ParseNetnsID(s string) (NetnsID, bool) {
	rest, found := strings.CutPrefix(s, "netns:")
	if !found {
		return NetnsID{}, false
	}
	d, i, found := strings.Cut(rest, ":")
	if !found {
		return NetnsID{}, false
	}
	dev, err := strconv.ParseUint(d, 10, 64)
	if err != nil {
		return NetnsID{}, false
	}
	ino, err := strconv.ParseUint(i, 10, 64)
	if err != nil || ino == 0 {
		return NetnsID{}, false
	}
	id := NetnsID{Dev: dev, Ino: ino}
	return id, id.String() == s // canonical form only (no "+1", no leading zeros)
}
