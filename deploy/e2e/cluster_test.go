package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flatmesh/flatmesh/deploy/lab"
	"github.com/flatmesh/flatmesh/internal/kerneltest"
)

func hostNames(l *lab.Lab) []string {
	var out []string
	for _, h := range l.Hosts() {
		out = append(out, h.Name)
	}
	return out
}

// TestRootClusterLifecycle: 5 agents form one cluster; a SIGKILLed agent is
// marked failed everywhere, rejoins without --join when restarted; a leaving
// agent is marked left and exits 0.
func TestRootClusterLifecycle(t *testing.T) {
	start := time.Now()
	l := upLab(t, lab.Options{Hosts: 5, ContainersPerHost: lab.NoContainers})
	t.Logf("FIGURE: 5 agents up and all seeing each other alive after %s (lab build included)", time.Since(start).Round(time.Millisecond))
	names := hostNames(l)
	for _, h := range names {
		st := peerStates(t, l, h)
		if len(st) != 5 {
			t.Fatalf("%s sees %d members, want 5: %v", h, len(st), st)
		}
		for m, s := range st {
			if s != "alive" {
				t.Fatalf("%s sees %s as %s, want alive", h, m, s)
			}
		}
		out, err := l.CLI(h, "status", "--json")
		if err != nil {
			t.Fatalf("status on %s: %v\n%s", h, err, out)
		}
		var status struct {
			Name, Cluster, Mode string
			Alive               int
		}
		if err := json.Unmarshal(out, &status); err != nil || status.Alive != 5 || status.Name != h || status.Mode == "" || status.Cluster == "" {
			t.Fatalf("status --json on %s = %s (err %v), want name %s and alive 5", h, out, err, h)
		}
	}
	logRSS(t, l, "h1")

	// SIGHUP reloads: the agent stays up and says what it could apply.
	if err := l.Signal("h1", syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	kerneltest.Eventually(t, 10*time.Second, "h1 to log the reload", func() bool {
		return strings.Contains(l.LogTail("h1", 20), "reloaded configuration")
	})
	if !l.AgentRunning("h1") {
		t.Fatal("SIGHUP stopped the agent")
	}

	// A crash: SIGKILL h5; the others mark it failed.
	if err := l.StopAgent("h5", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d := waitState(t, l, names[:4], "h5", "failed", 30*time.Second)
	t.Logf("FIGURE: SIGKILLed agent marked failed everywhere after %s", d.Round(time.Millisecond))

	// Restart without --join: it rejoins from its saved members.
	if err := l.StartAgent("h5"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx, "h5"); err != nil {
		t.Fatal(err)
	}
	d = waitState(t, l, names, "h5", "alive", 30*time.Second)
	t.Logf("FIGURE: restarted agent alive everywhere again after %s (no --join)", d.Round(time.Millisecond))

	// A graceful leave through the CLI: h4 exits 0 and is marked left.
	if out, err := l.CLI("h4", "leave"); err != nil {
		t.Fatalf("leave: %v\n%s", err, out)
	}
	code, err := l.WaitAgentExit("h4", 20*time.Second)
	if err != nil || code != 0 {
		t.Fatalf("agent h4 after leave: exit code %d, err %v; want 0", code, err)
	}
	waitState(t, l, []string{"h1", "h2", "h3", "h5"}, "h4", "left", 30*time.Second)

	// SIGTERM is a graceful leave too.
	if err := l.StopAgent("h3", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitState(t, l, []string{"h1", "h2", "h5"}, "h3", "left", 30*time.Second)
}

// logRSS reports the resident memory of an idle agent.
func logRSS(t *testing.T, l *lab.Lab, host string) {
	h, err := l.Host(host)
	if err != nil || h.PID == 0 {
		return
	}
	// The lab starts agents through nsenter, which execs the agent: same PID.
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(h.PID), "status"))
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			t.Logf("FIGURE: idle agent %s %s (no race detector)", host, strings.Join(strings.Fields(line), " "))
		}
	}
}

// TestRootRefusals: a wrong gossip key, another cluster name, and a
// duplicate advertise address are each refused with a clear error, and the
// refused agent never shows up as a member.
func TestRootRefusals(t *testing.T) {
	l := upLab(t, lab.Options{Hosts: 2, ContainersPerHost: lab.NoContainers})
	h1, _ := l.Host("h1")
	h2, _ := l.Host("h2")
	wrongKey := filepath.Join(t.TempDir(), "wrong.key")
	if out, err := exec.Command(binary, "keygen", wrongKey).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cases := []struct {
		name string
		args func(h lab.Host) []string
		want []string
	}{
		{"wrong key", func(lab.Host) []string { return []string{"--key-file", wrongKey} }, []string{"gossip key"}},
		{"other cluster", func(lab.Host) []string { return []string{"--cluster", "other"} }, []string{`"other"`, `"` + l.Name() + `"`}},
		{"duplicate advertise", func(h lab.Host) []string {
			// The Vagrant trap: this host advertises h1's address (it holds it
			// on lo, as every Vagrant VM holds 10.0.2.15 on its own eth0).
			kerneltest.Run(t, "ip", "-n", h.Netns, "addr", "add", h1.Addr().String()+"/32", "dev", "lo")
			return []string{"--advertise", h1.Addr().String() + ":7497", "--bind", h.Addr().String() + ":7497"}
		}, []string{h1.Addr().String(), `"h1"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := l.AddIdleHost(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.StartAgent(h.Name, tc.args(h)...); err != nil {
				t.Fatal(err)
			}
			defer l.StopAgent(h.Name, syscall.SIGKILL)
			if err := l.WaitReady(ctx, h.Name); err != nil {
				t.Fatal(err)
			}
			// Join h2: in the duplicate case h1's address is local here.
			out, err := cli(l, h.Name, "join", h2.Addr().String())
			if err == nil {
				t.Fatalf("join succeeded, want a refusal; output:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Fatalf("join error does not say what differs (want %s):\n%s", w, out)
				}
			}
			t.Logf("refused as expected: %s", strings.TrimSpace(out))
			time.Sleep(time.Second)
			for _, o := range []string{"h1", "h2"} {
				if s, ok := peerStates(t, l, o)[h.Name]; ok && s == "alive" {
					t.Fatalf("%s lists the refused agent %s as alive", o, h.Name)
				}
			}
		})
	}
}

// TestRootBadInput: the agent refuses bad settings with a clear message and
// a non-zero exit, creating nothing.
func TestRootBadInput(t *testing.T) {
	kerneltest.RequireRoot(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown mode", []string{"--mode", "ipip"}, `invalid mode "ipip"`},
		{"bad cidr", []string{"--cidr", "10.1.0.0/99"}, `invalid cidr`},
		{"bad advertise", []string{"--advertise", "1.2.3"}, `invalid advertise`},
		{"unreadable key", []string{"--key-file", filepath.Join(dir, "nokey")}, `invalid key_file`},
		{"socket dir missing", []string{"--socket", filepath.Join(dir, "missing", "x.sock")}, `does not exist`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"agent", "--insecure", "--advertise", "127.0.0.1", "--state-dir", state, "--socket", filepath.Join(dir, "ok.sock")}, tc.args...)
			cmd := exec.Command(binary, args...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("agent started with bad input; output:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("error does not name the problem (want %q):\n%s", tc.want, out)
			}
			if _, err := os.Stat(state); err == nil {
				t.Fatalf("the agent created its state dir before refusing bad input")
			}
		})
	}
	out, err := exec.Command(binary, "status", "--socket", filepath.Join(dir, "none.sock")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), filepath.Join(dir, "none.sock")) {
		t.Fatalf("status without an agent must fail naming the socket; got err %v:\n%s", err, out)
	}
}
