package kerneltest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRequireFailsInCI runs a child test that needs a missing command with
// RequireRootEnv set: it must fail, not skip. Without it, it must skip.
func TestRequireFailsInCI(t *testing.T) {
	if os.Getenv("KERNELTEST_CHILD") == "1" {
		RequireCommands(t, "no-such-command-flatmesh")
		return
	}
	run := func(env ...string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRequireFailsInCI$", "-test.v")
		cmd.Env = append(append(os.Environ(), "KERNELTEST_CHILD=1"), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(RequireRootEnv + "=1")
	if err == nil || !strings.Contains(out, "--- FAIL") || !strings.Contains(out, "must run, not skip") {
		t.Fatalf("with %s=1 the test must fail: err=%v\n%s", RequireRootEnv, err, out)
	}
	out, err = run(RequireRootEnv + "=0")
	if err != nil || !strings.Contains(out, "--- SKIP") {
		t.Fatalf("without %s the test must skip: err=%v\n%s", RequireRootEnv, err, out)
	}
}
