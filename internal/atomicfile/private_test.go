package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := Write(path, []byte("secret"), Options{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadPrivate(path); err != nil || string(b) != "secret" {
		t.Fatalf("owner-only file: %q %v", b, err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadPrivate(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	if _, err := ReadPrivate(path + ".missing"); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}
