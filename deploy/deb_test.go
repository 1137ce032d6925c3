package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildDeb builds a real flatmesh binary (and, when withCNI, puts a second
// executable beside it as flatmesh-cni) and packages it with
// deb/build.sh, the script `make deb` runs. It returns the .deb's path.
func buildDeb(t *testing.T, withCNI bool) string {
	t.Helper()
	for _, p := range []string{"dpkg-deb", "md5sum"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("skipping: %s is not installed (dpkg)", p)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	cmd := exec.Command("go", "build", "-o", filepath.Join(bin, "flatmesh"), "../cmd/flatmesh")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if withCNI {
		// Any executable: this checks the packaging picks the file up.
		if out, err := exec.Command("install", "-m", "0755", "/bin/true", filepath.Join(bin, "flatmesh-cni")).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	out, err := exec.Command("deb/build.sh", "1.2.3~test", "amd64", bin, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("deb/build.sh: %v\n%s", err, out)
	}
	deb := strings.TrimSpace(string(out))
	if deb != filepath.Join(dir, "flatmesh_1.2.3~test_amd64.deb") {
		t.Fatalf("build.sh printed %q", deb)
	}
	return deb
}

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestDebPackage(t *testing.T) {
	deb := buildDeb(t, false)
	for field, want := range map[string]string{"Package": "flatmesh", "Version": "1.2.3~test", "Architecture": "amd64"} {
		if got := strings.TrimSpace(dpkgDeb(t, "-f", deb, field)); got != want {
			t.Errorf("control %s = %q, want %q", field, got, want)
		}
	}
	list := dpkgDeb(t, "-c", deb)
	for _, want := range []string{"./usr/bin/flatmesh", "./lib/systemd/system/flatmesh.service",
		"./usr/share/doc/flatmesh/examples/flatmesh.hcl.example", "./usr/share/doc/flatmesh/README.md",
		"./usr/share/doc/flatmesh/architecture.md", "./usr/share/doc/flatmesh/copyright"} {
		if !strings.Contains(list, want+"\n") {
			t.Errorf("the package lacks %s:\n%s", want, list)
		}
	}
	if strings.Contains(list, "flatmesh-cni") || strings.Contains(list, "./etc/") {
		t.Errorf("unexpected files (no flatmesh-cni was built; nothing goes to /etc):\n%s", list)
	}
	if !strings.Contains(list, "-rwxr-xr-x root/root") {
		t.Errorf("the binary is not root-owned 0755:\n%s", list)
	}
	// The packaged unit runs the packaged binary and still verifies.
	root := t.TempDir()
	dpkgDeb(t, "-x", deb, root)
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/flatmesh.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/flatmesh agent") || strings.Contains(string(unit), "/usr/local") {
		t.Fatalf("packaged unit does not run /usr/bin/flatmesh:\n%s", unit)
	}
	if out, err := exec.Command(filepath.Join(root, "usr/bin/flatmesh"), "version").CombinedOutput(); err != nil {
		t.Fatalf("packaged binary: %v\n%s", err, out)
	}
	// Maintainer scripts: present, executable, valid sh; install starts
	// nothing, remove stops the agent.
	ctl := t.TempDir()
	dpkgDeb(t, "-e", deb, ctl)
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		p := filepath.Join(ctl, s)
		if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
		}
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v mode %v", s, err, st.Mode())
		}
	}
	postinst, _ := os.ReadFile(filepath.Join(ctl, "postinst"))
	if strings.Contains(string(postinst), "enable") || strings.Contains(string(postinst), "systemctl start") {
		t.Errorf("postinst must not enable or start the agent:\n%s", postinst)
	}
	prerm, _ := os.ReadFile(filepath.Join(ctl, "prerm"))
	if !strings.Contains(string(prerm), "systemctl stop flatmesh.service") {
		t.Errorf("prerm must stop the agent:\n%s", prerm)
	}
}

func TestDebPackageTakesTheCNIPlugin(t *testing.T) {
	deb := buildDeb(t, true)
	if list := dpkgDeb(t, "-c", deb); !strings.Contains(list, "./usr/lib/cni/flatmesh\n") {
		t.Fatalf("flatmesh-cni is not packaged:\n%s", list)
	}
}
