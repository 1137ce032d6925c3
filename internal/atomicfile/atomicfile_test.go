package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := Write(p, []byte("one"), Options{}); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("two"), Options{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != "two" || st.Mode().Perm() != 0o644 {
		t.Fatalf("content %q mode %v, want \"two\" 0644", b, st.Mode().Perm())
	}
	err := Write(p, []byte("three"), Options{NoReplace: true})
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("NoReplace over an existing file: err %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("NoReplace clobbered the file: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if err := Write(filepath.Join(dir, "missing", "x"), nil, Options{}); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
}
