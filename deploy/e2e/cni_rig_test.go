package e2e

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// debianPlugins is where Debian's containernetworking-plugins live.
const debianPlugins = "/usr/lib/cni"

// cniRig is what the CNI tests share: the plugin (installed as "flatmesh",
// its type) and cnitool, built from this module; per-host network
// configurations pointing at each lab host's agent; and a mount namespace
// in which every runtime (cnitool, podman) runs, whose /var/lib is a
// directory of the test, so their caches (/var/lib/cni,
// /var/lib/containers) never touch the machine. /run/netns stays shared
// with the machine, so the agents see the namespaces runtimes create.
type cniRig struct {
	l       *lab.Lab
	dir     string
	binDir  string // CNI plugin dir holding "flatmesh"
	cnitool string
	mntNS   string // /proc/PID/ns/mnt of the holder process
}

func newCNIRig(t *testing.T, l *lab.Lab) *cniRig {
	t.Helper()
	kerneltest.RequireCommands(t, "go", "unshare", "nsenter", "sh", "mount")
	for _, p := range []string{"portmap", "tuning"} {
		if _, err := os.Stat(filepath.Join(debianPlugins, p)); err != nil {
			t.Skipf("skipping: %s/%s is missing (apt-get install containernetworking-plugins; .ci/run installs it)", debianPlugins, p)
		}
	}
	r := &cniRig{l: l, dir: t.TempDir()}
	r.binDir = filepath.Join(r.dir, "bin")
	r.cnitool = filepath.Join(r.dir, "cnitool")
	build := func(out, pkg string) {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	start := time.Now()
	build(filepath.Join(r.binDir, "flatmesh"), "github.com/flatmesh/flatmesh/cmd/flatmesh-cni")
	// cnitool at the version go.mod pins for the CNI library.
	build(r.cnitool, "github.com/containernetworking/cni/cnitool")
	t.Logf("FIGURE: plugin and cnitool built in %s", time.Since(start).Round(time.Millisecond))
	r.startMountNS(t)
	for _, h := range l.Hosts() {
		r.writeConf(t, filepath.Join(r.dir, "net", h.Name), "fmnet.conflist", fmnetConflist(h.Socket))
		r.writeConf(t, filepath.Join(r.dir, "net", h.Name), "fmgc.conflist", fmgcConflist(h.Socket))
	}
	return r
}

// fmnetConflist is the chain a user copies (README, docs/cni.md): flatmesh,
// then Debian's tuning and portmap, CNI 1.0.0 (Debian's plugins speak up
// to 1.0.0).
func fmnetConflist(socket string) string {
	return fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "fmnet", "plugins": [
  {"type": "flatmesh", "socket": %q},
  {"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}`, socket)
}

// fmgcConflist is flatmesh alone in CNI 1.1.0, for STATUS and GC.
func fmgcConflist(socket string) string {
	return fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "fmgc", "plugins": [{"type": "flatmesh", "socket": %q}]}`, socket)
}

func (r *cniRig) writeConf(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startMountNS starts the holder of the runtimes' mount namespace and
// stops it at cleanup (the namespace dies with its last process).
func (r *cniRig) startMountNS(t *testing.T) {
	t.Helper()
	varlib := filepath.Join(r.dir, "varlib")
	if err := os.MkdirAll(varlib, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "unchanged", "--",
		"sh", "-c", `mount --bind "$0" /var/lib && echo ready && exec sleep 3600`, varlib)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the runtimes' mount namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("the runtimes' mount namespace did not come up: %q %v", line, err)
	}
	r.mntNS = "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/mnt"
}

// run runs a program as a runtime on host would: in the host's network
// namespace and the runtimes' mount namespace, with env added. It returns
// stdout and stderr together.
func (r *cniRig) run(host string, env []string, name string, args ...string) (string, error) {
	h, err := r.l.Host(host)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	argv := append([]string{"--mount=" + r.mntNS, "--net=" + lab.NetnsPath(h.Netns), "--", name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", argv...)
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// cnitool runs `cnitool op net netns` on host with CNI_ARGS args.
func (r *cniRig) cnitoolOn(host, op, net, netns, args string) (string, error) {
	env := []string{"CNI_PATH=" + r.binDir + ":" + debianPlugins, "NETCONFPATH=" + filepath.Join(r.dir, "net", host)}
	if args != "" {
		env = append(env, "CNI_ARGS="+args)
	}
	return r.run(host, env, r.cnitool, op, net, netns)
}

// cnitoolID is the container ID cnitool gives a namespace path.
func cnitoolID(netnsPath string) string {
	s := sha512.Sum512([]byte(netnsPath))
	return fmt.Sprintf("cnitool-%x", s[:10])
}

// usedOn is how many addresses host's agent holds in its own blocks.
func usedOn(l *lab.Lab, host string) (int, error) {
	out, err := l.CLI(host, "ipam", "--json")
	if err != nil {
		return 0, fmt.Errorf("ipam on %s: %v\n%s", host, err, out)
	}
	var m api.IPAM
	if err := json.Unmarshal(out, &m); err != nil {
		return 0, fmt.Errorf("ipam --json on %s: %v", host, err)
	}
	used := 0
	for _, b := range m.Blocks {
		if b.Owner == host {
			used += b.Used
		}
	}
	return used, nil
}

func mustUsed(t *testing.T, l *lab.Lab, host string) int {
	t.Helper()
	n, err := usedOn(l, host)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitUsed waits until host's agent holds want addresses.
func waitUsed(t *testing.T, l *lab.Lab, host string, want int, timeout time.Duration) {
	t.Helper()
	kerneltest.Eventually(t, timeout, fmt.Sprintf("%s to hold %d addresses", host, want), func() bool {
		n, err := usedOn(l, host)
		return err == nil && n == want
	})
}

// restartAgent stops host's agent (SIGTERM), runs fn while it is down,
// starts it again and waits until it answers.
func restartAgent(t *testing.T, l *lab.Lab, host string, fn func()) {
	t.Helper()
	if err := l.StopAgent(host, syscall.SIGTERM); err != nil {
		t.Fatalf("stopping %s: %v", host, err)
	}
	fn()
	if err := l.StartAgent(host); err != nil {
		t.Fatalf("starting %s: %v", host, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx, host); err != nil {
		t.Fatalf("%s not ready after restart: %v", host, err)
	}
}

// busyboxTar writes a root filesystem holding only the static busybox and
// links for the applets the tests use, as a tar for `podman import`.
func busyboxTar(t *testing.T, path string) {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("skipping: no /bin/busybox (apt-get install busybox-static; .ci/run installs it): %v", err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	hdr := func(h *tar.Header) {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin/", "tmp/", "etc/", "proc/", "sys/", "dev/"} {
		hdr(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	hdr(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))})
	if _, err := tw.Write(bb); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "ping", "httpd", "sleep", "mkdir", "echo", "cat", "nc", "ip"} {
		hdr(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
