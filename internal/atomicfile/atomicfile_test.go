package atomicfile

import (
	"errors"
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

func TestReadVersioned(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.json")
	type doc struct {
		Format int    `json:"format"`
		Name   string `json:"name"`
	}
	var d doc
	if found, err := ReadVersioned(p, Versioned{Field: "format", Want: 2}, &d); found || err != nil {
		t.Fatalf("missing file: found %v err %v", found, err)
	}
	if err := os.WriteFile(p, []byte(`{"format":2,"name":"a"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if found, err := ReadVersioned(p, Versioned{Field: "format", Want: 2}, &d); !found || err != nil || d.Name != "a" {
		t.Fatalf("good file: found %v err %v doc %+v", found, err, d)
	}
	var ve *VersionError
	if _, err := ReadVersioned(p, Versioned{Field: "format", Want: 3}, &d); !errors.As(err, &ve) || ve.Have != 2 || ve.Want != 3 {
		t.Fatalf("wrong version: err %v", err)
	}
	// The default field is "version"; a file without it has version 0.
	if _, err := ReadVersioned(p, Versioned{Want: 1}, &d); !errors.As(err, &ve) || ve.Have != 0 {
		t.Fatalf("missing version field: err %v", err)
	}
	var ce *CorruptError
	for _, bad := range []string{`{"format":2,`, `[1]`, `{"format":"two"}`, `{"format":2,"name":7}`} {
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadVersioned(p, Versioned{Field: "format", Want: 2}, &doc{}); !errors.As(err, &ce) {
			t.Fatalf("%s: err %v, want a CorruptError", bad, err)
		}
	}
}

func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	l, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file description: a second open in
	// the same process conflicts just like another process would.
	if _, err := LockDir(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: err %v, want ErrLocked", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := LockDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	_ = l2.Unlock()
}
