package wireguard

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flatmesh/flatmesh/internal/kernel"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

// childEnv carries a child's job: the embedded device must run in the
// process's own namespaces, so the root test re-runs this test binary inside
// each host namespace (with a private /run/wireguard mount).
const childEnv = "FLATMESH_WG_TEST_CHILD"

type childJob struct {
	Self Node
	Peer Node
	Key  wgtypes.Key
}

// TestRootWireGuardApply: two namespaces, each running the embedded device
// through OpenDevice and Apply; a second Apply plans nothing; a device
// stopped and re-opened (an agent restart) re-attaches to the persistent
// TUN whose routes stayed; traffic then flows between the two bridges.
func TestRootWireGuardApply(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.RequireCommands(t, "ip", "unshare", "ping")
	a, b := kerneltest.Netns(t, "wga"), kerneltest.Netns(t, "wgb")
	kerneltest.Veth(t, a, "eth0", b, "eth0")
	kerneltest.Run(t, "ip", "-n", a, "addr", "add", "198.18.0.1/24", "dev", "eth0")
	kerneltest.Run(t, "ip", "-n", b, "addr", "add", "198.18.0.2/24", "dev", "eth0")
	ka, kb := key(t), key(t)
	na := Node{Name: "a", Underlay: ip("198.18.0.1"), Port: DefaultPort, PublicKey: ka.PublicKey(), Blocks: []netip.Prefix{pfx("10.213.0.0/26")}}
	nb := Node{Name: "b", Underlay: ip("198.18.0.2"), Port: DefaultPort, PublicKey: kb.PublicKey(), Blocks: []netip.Prefix{pfx("10.213.1.0/26")}}
	stopA := startChild(t, a, childJob{Self: na, Peer: nb, Key: ka})
	stopB := startChild(t, b, childJob{Self: nb, Peer: na, Key: kb})
	defer stopA()
	defer stopB()
	// b's restart can leave a holding a session b forgot, with b's fresh
	// handshake refused by a's flood limit when the two initiations arrive
	// close together on a loaded machine; WireGuard then retries after its
	// 5 s rekey timeout. Traffic must flow within that, not at once.
	kerneltest.Eventually(t, 12*time.Second, "a ping from a's bridge to b's", func() bool {
		return exec.Command("ip", "netns", "exec", a, "ping", "-c", "1", "-W", "1", "-I", "10.213.0.1", "10.213.1.1").Run() == nil
	})
	routes := kerneltest.Run(t, "ip", "-n", a, "route", "show", "proto", "95")
	if strings.TrimSpace(routes) != "10.213.1.0/26 dev flatmesh.wg scope link src 10.213.0.1" {
		t.Errorf("routes in %s:\n%s", a, routes)
	}
}

// startChild runs the child in ns and waits for it to say READY; the
// returned func ends it.
func startChild(t *testing.T, ns string, job childJob) func() {
	t.Helper()
	b, _ := json.Marshal(job)
	cmd := exec.Command("ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mkdir -p /run/wireguard && mount -t tmpfs none /run/wireguard && exec "$0" "$@"`,
		os.Args[0], "-test.run", "^TestRootWireGuardChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	ready := make(chan bool, 1)
	scanned := make(chan struct{}) // closed at EOF: out is complete
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if !sent && sc.Text() == "READY" {
				ready <- true
				sent = true
			}
		}
		if !sent {
			ready <- false
		}
	}()
	stop := func() {
		stdin.Close()
		<-scanned
		if err := cmd.Wait(); err != nil {
			t.Errorf("child in %s: %v:\n%s", ns, err, out.String())
		}
	}
	select {
	case ok := <-ready:
		if !ok {
			stop()
			t.Fatalf("child in %s failed:\n%s", ns, out.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-scanned
		_ = cmd.Wait()
		t.Fatalf("child in %s not ready in 30 s:\n%s", ns, out.String())
	}
	return stop
}

// TestRootWireGuardChild is the child's body (skipped unless started by
// TestRootWireGuardApply).
func TestRootWireGuardChild(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("run by TestRootWireGuardApply inside a namespace")
	}
	var job childJob
	if err := json.Unmarshal([]byte(raw), &job); err != nil {
		t.Fatal(err)
	}
	ns, err := kernel.OpenNS("")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	links := SystemLinks{NS: ns}
	h, err := OpenDevice(links, DefaultDevice, 1420)
	if err != nil {
		t.Fatal(err)
	}
	if h.Backend != BackendUserspace || !h.Created {
		t.Fatalf("handle %+v: want a new userspace device (no wireguard module here)", h)
	}
	wg, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer wg.Close()
	st, err := Desired(job.Self, []Node{job.Peer}, Options{MTU: 1420, PrivateKey: job.Key})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := Apply(ns, wg, st); err != nil || len(res.Device.Add) != 1 || len(res.Plan.Add.Routes) != 1 {
		t.Fatalf("first apply %+v: %v", res, err)
	}
	if res, err := Apply(ns, wg, st); err != nil || !res.Empty() {
		t.Fatalf("second apply not empty: %+v %v", res, err)
	}
	// An agent restart: the device stops, the TUN and its routes stay. A
	// real restart takes longer than WireGuard's handshake flood limit
	// (a peer consumes one initiation per 20 ms; Apply starts one at once
	// for every added peer), so the restart here is not quicker either:
	// half a second, because on a loaded machine the peer may consume the
	// first life's initiation late. With 50 ms, 1 of 6 runs beside two
	// busy loops found no traffic within 12 s (CI failed on it once); with
	// 500 ms, 24 of 24 passed.
	time.Sleep(500 * time.Millisecond)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if h, err = OpenDevice(links, DefaultDevice, 1420); err != nil || h.Created || h.Backend != BackendUserspace {
		t.Fatalf("re-open %+v: %v", h, err)
	}
	defer h.Close()
	res, err := Apply(ns, wg, st)
	if err != nil || !res.Plan.Empty() || len(res.Device.Add) != 1 || res.Device.PrivateKey == nil {
		t.Fatalf("apply after re-attach: want only the device programmed (routes adopted), got %+v %v", res, err)
	}
	os.Stdout.WriteString("READY\n")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
	if err := Remove(ns, DefaultDevice, "flatmesh0"); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Error(err)
	}
}
