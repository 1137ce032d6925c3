package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Docker in the lab: one real dockerd per host, in the host's network
// namespace and in a mount namespace of its own, where HOSTDIR/plugins is
// bound over /run/docker/plugins (the only place Docker looks for plugin
// sockets), so each dockerd finds its own host's agent (whose
// --docker-plugin-dir is HOSTDIR/plugins). Each has its own data root,
// exec root (and so its own managed containerd), API socket, pid file and
// cgroup parent; storage is vfs, there is no docker0 (--bridge=none) and
// Docker's iptables stays on as on a real host.

// DockerCLI is Debian's docker client (a newer /usr/local/bin/docker may
// shadow it on PATH and refuse to talk to dockerd 20.10).
const DockerCLI = "/usr/bin/docker"

// BusyboxImage is the image ImportBusybox makes.
const BusyboxImage = "busybox"

// busyboxApplets are linked to /bin/busybox in the image.
var busyboxApplets = []string{"sh", "ping", "nc", "sleep", "ip", "cat", "echo", "ifconfig", "wget", "httpd", "true", "dd", "timeout"}

// Dockerd is one host's dockerd.
type Dockerd struct {
	Host      string // lab host name
	Dir       string // HOSTDIR/docker
	Socket    string // HOSTDIR/docker.sock (the agent's --docker-socket)
	PluginDir string // HOSTDIR/plugins (the agent's --docker-plugin-dir)
	LogFile   string
	pidFile   string
	cgroup    string
}

func (l *Lab) dockerdOf(h Host) Dockerd {
	return Dockerd{Host: h.Name, Dir: filepath.Join(h.Dir, "docker"), Socket: filepath.Join(h.Dir, "docker.sock"),
		PluginDir: filepath.Join(h.Dir, "plugins"), LogFile: filepath.Join(h.Dir, "dockerd.log"),
		pidFile: filepath.Join(h.Dir, "docker.pid"), cgroup: "fmlab-" + l.Name() + "-" + h.Name}
}

// StartDockerd starts host's dockerd and waits until it answers. StopDockerd
// (or Down) stops it and everything it started.
func (l *Lab) StartDockerd(ctx context.Context, host string) (Dockerd, error) {
	h, err := l.Host(host)
	if err != nil {
		return Dockerd{}, err
	}
	d := l.dockerdOf(h)
	for _, dir := range []string{d.Dir, d.PluginDir, "/run/docker/plugins"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return d, fmt.Errorf("dockerd %s: %w", host, err)
		}
	}
	script := fmt.Sprintf(`set -e
if [ -d /run/containerd ]; then mount -t tmpfs tmpfs /run/containerd; fi
mount --bind %[1]s /run/docker/plugins
exec /usr/sbin/dockerd --data-root %[2]s/data --exec-root %[2]s/x -H unix://%[3]s --pidfile %[4]s \
  --storage-driver vfs --bridge=none --cgroup-parent /%[5]s --shutdown-timeout 2 --userland-proxy=false`,
		d.PluginDir, d.Dir, d.Socket, d.pidFile, d.cgroup)
	f, err := os.OpenFile(d.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return d, err
	}
	defer f.Close()
	cmd := exec.Command("nsenter", "--net="+NetnsPath(h.Netns), "--", "unshare", "--mount", "--propagation", "slave", "sh", "-c", script)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return d, fmt.Errorf("starting dockerd %s: %w", host, err)
	}
	go func() { _ = cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := d.Docker(ctx, "version", "--format", "{{.Server.Version}}"); err == nil {
			return d, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = l.StopDockerd(host)
			return d, fmt.Errorf("dockerd %s did not answer within 30s; its log:\n%s", host, tail(d.LogFile, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Docker runs the docker client against d and returns its combined output.
func (d Dockerd) Docker(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, DockerCLI, append([]string{"-H", "unix://" + d.Socket}, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(d.Dir, "cli"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("docker %s (host %s): %w: %s", strings.Join(args, " "), d.Host, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// ImportBusybox makes image "busybox" from the host's static busybox
// (Debian's busybox-static), with the applets the tests use linked in.
func (d Dockerd) ImportBusybox(ctx context.Context) error {
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("reading /bin/busybox (install busybox-static): %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdrs := []*tar.Header{{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))}}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
	}
	if _, err := tw.Write(bin); err != nil {
		return err
	}
	for _, a := range busyboxApplets {
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, DockerCLI, "-H", "unix://"+d.Socket, "import", "-", BusyboxImage)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(d.Dir, "cli"))
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker import on %s: %w: %s", d.Host, err, out)
	}
	return nil
}

// StopDockerd stops host's dockerd as a service stop would (SIGTERM, which
// stops its containers, each within its --stop-timeout, then SIGKILL after
// 20s), kills whatever is left in
// its cgroup and removes the cgroup. Its mounts lived in its own mount
// namespace and went with it. Its data root stays, so StartDockerd brings
// it back with its networks and containers. Idempotent.
func (l *Lab) StopDockerd(host string) error {
	h, err := l.Host(host)
	if err != nil {
		return err
	}
	return l.stopDockerd(l.dockerdOf(h))
}

func (l *Lab) stopDockerd(d Dockerd) error {
	var errs []error
	pid := readPID(d.pidFile)
	if pid > 0 && !pidGone(pid) {
		_ = signalPID(pid, syscall.SIGTERM)
		deadline := time.Now().Add(20 * time.Second)
		for !pidGone(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		_ = signalPID(pid, syscall.SIGKILL)
	}
	killUnder(d.Dir) // its managed containerd and shims
	errs = append(errs, killCgroup(d.cgroup))
	_ = os.Remove(d.pidFile)
	return errors.Join(errs...)
}

// stopDockerds stops every host's dockerd (for Down).
func (l *Lab) stopDockerds() error {
	var errs []error
	for _, h := range l.d.Hosts {
		errs = append(errs, l.stopDockerd(Dockerd{Host: h.Name, Dir: filepath.Join(h.Dir, "docker"),
			Socket: filepath.Join(h.Dir, "docker.sock"), pidFile: filepath.Join(h.Dir, "docker.pid"), cgroup: "fmlab-" + l.d.Name + "-" + h.Name}))
	}
	return errors.Join(errs...)
}

// killUnder stops (SIGTERM, then SIGKILL after 3s) every process whose
// command line names a path under dir: the containerd and shims a dockerd
// started with its exec root there.
func killUnder(dir string) {
	find := func() []int {
		var out []int
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, err := os.ReadFile(p)
			if err != nil || !bytes.Contains(b, []byte(dir+"/")) {
				continue
			}
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
				out = append(out, pid)
			}
		}
		return out
	}
	for _, pid := range find() {
		_ = signalPID(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(find()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range find() {
		_ = signalPID(pid, syscall.SIGKILL)
	}
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// killCgroup kills every process under the cgroup parent (in each v1
// hierarchy or the v2 one) and removes the cgroups, children first.
func killCgroup(name string) error {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if fi, err := os.Stat("/sys/fs/cgroup/" + name); err == nil && fi.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/"+name)
	}
	var errs []error
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			for try := 0; try < 100; try++ {
				procs, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
				fields := strings.Fields(string(procs))
				for _, f := range fields {
					if pid, err := strconv.Atoi(f); err == nil {
						_ = signalPID(pid, syscall.SIGKILL)
					}
				}
				if err := syscall.Rmdir(dirs[i]); err == nil || errors.Is(err, syscall.ENOENT) {
					break
				} else if try == 99 {
					errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dirs[i], err))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	return errors.Join(errs...)
}
