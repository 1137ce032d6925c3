package kernel

import (
	"errors"
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace found by StatNetns: the file that holds it
// and its identity.
type Netns struct {
	Path string
	ID   NetnsID
}

// StatNetns resolves spec (see parseNetnsSpec) and checks that the file is
// a network namespace before opening it: stat and statfs (NSFS_MAGIC) first,
// so a FIFO, a device, a directory or a symlink loop is refused without
// being opened; then a non-blocking open, and fstat/fstatfs on the open file
// to make sure it is the same nsfs file, and NS_GET_NSTYPE. It never blocks
// on what it finds.
func StatNetns(spec string) (Netns, error) {
	kind, path, err := parseNetnsSpec(spec)
	if err != nil {
		return Netns{}, err
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Netns{}, statNetnsError(spec, kind, path, err)
	}
	if err := checkNsfs(path, &st); err != nil {
		return Netns{}, err
	}
	id := NetnsID{Dev: st.Dev, Ino: st.Ino}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return Netns{}, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return Netns{}, fmt.Errorf("reading network namespace %s: %w", path, err)
	}
	if (NetnsID{Dev: fst.Dev, Ino: fst.Ino}) != id {
		return Netns{}, fmt.Errorf("%s changed while it was checked: try again", path)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil || sfs.Type != unix.NSFS_MAGIC {
		return Netns{}, fmt.Errorf("%s is not a namespace file (is it still mounted?)", path)
	}
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return Netns{}, fmt.Errorf("%s is not a namespace file (is it still mounted?): %w", path, err)
	}
	if typ != unix.CLONE_NEWNET {
		return Netns{}, fmt.Errorf("%s is a namespace, but not a network namespace", path)
	}
	return Netns{Path: path, ID: id}, nil
}

// checkNsfs refuses anything that is not a regular file on nsfs, from its
// stat (following symlinks, as /proc/PID/ns/net is one) and statfs.
func checkNsfs(path string, st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFIFO:
		return fmt.Errorf("%s is a FIFO, not a network namespace file", path)
	case unix.S_IFCHR, unix.S_IFBLK:
		return fmt.Errorf("%s is a device, not a network namespace file", path)
	case unix.S_IFDIR:
		return fmt.Errorf("%s is a directory, not a network namespace file", path)
	case unix.S_IFSOCK:
		return fmt.Errorf("%s is a socket, not a network namespace file", path)
	default:
		return fmt.Errorf("%s is not a network namespace file", path)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return fmt.Errorf("reading the file system of %s: %w", path, err)
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("%s is not a namespace file (is it still mounted?)", path)
	}
	return nil
}

func statNetnsError(spec string, kind netnsSpecKind, path string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s is a symlink loop, not a network namespace file", path)
	case errors.Is(err, fs.ErrNotExist) && kind == specName:
		return fmt.Errorf("network namespace %q not found (looked at %s)", spec, path)
	case errors.Is(err, fs.ErrNotExist) && kind == specPID:
		return fmt.Errorf("no process with pid %s (looked at %s)", spec, path)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("network namespace %s does not exist", path)
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return fmt.Errorf("network namespace %s cannot be read (permission denied): refusing it", path)
	}
	return fmt.Errorf("network namespace %q: %w", spec, err)
}

// hostNetnsPaths are the namespaces a container must never be: the
// agent's own and PID 1's (the host's, when the agent runs in a lab host).
var hostNetnsPaths = []string{"/proc/self/ns/net", "/proc/1/ns/net"}

// ContainerNetns is StatNetns for a namespace that is to receive a
// container interface: it also refuses the agent's own network namespace
// and PID 1's, compared by identity (device and inode), never by path, so a
// PID of a host-network process or a bind mount of the host's namespace is
// refused too.
func ContainerNetns(spec string) (Netns, error) {
	ns, err := StatNetns(spec)
	if err != nil {
		return Netns{}, err
	}
	for _, hp := range hostNetnsPaths {
		var st unix.Stat_t
		if err := unix.Stat(hp, &st); err != nil {
			if hp != "/proc/self/ns/net" && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)) {
				// A sandbox hides PID 1's namespace; then we cannot enter
				// it either, and a path to it was refused above.
				continue
			}
			return Netns{}, fmt.Errorf("reading %s to compare namespaces: %w", hp, err)
		}
		if (NetnsID{Dev: st.Dev, Ino: st.Ino}) == ns.ID {
			who := "the agent's own"
			if hp == "/proc/1/ns/net" {
				who = "PID 1's (the host's)"
			}
			return Netns{}, fmt.Errorf("%s is %s network namespace: refusing to attach a container there (give the container's namespace, not the host's)", ns.Path, who)
		}
	}
	return ns, nil
}
