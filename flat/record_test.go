package flat

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, ok, err := ReadRecord(dir); ok || err != nil {
		t.Fatalf("empty dir: ok=%v err=%v", ok, err)
	}
	want := Record{Version: recordVersion, Iface: "eth0", Bridge: "fmbr0", Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Original: testHost()}
	if err := writeRecord(dir, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := ReadRecord(dir)
	if err != nil || !ok {
		t.Fatalf("read: ok=%v err=%v", ok, err)
	}
	if d := Diff(want.Original, got.Original); len(d) > 0 || got.Iface != "eth0" || got.Bridge != "fmbr0" || !got.Created.Equal(want.Created) {
		t.Fatalf("round trip changed the record: %v %+v", d, got)
	}
	// Exact, not only normalised: lifetimes and flags survive JSON.
	if got.Original.Addrs[0] != want.Original.Addrs[0] || got.Original.Routes[1] != want.Original.Routes[1] {
		t.Errorf("address or route changed: %+v / %+v", got.Original.Addrs[0], got.Original.Routes[1])
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != RecordFile {
		t.Errorf("state dir holds %v, want only %s", entries, RecordFile)
	}
	if err := removeRecord(dir); err != nil {
		t.Fatal(err)
	}
	if err := removeRecord(dir); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if _, ok, _ := ReadRecord(dir); ok {
		t.Fatal("record still there after remove")
	}
}

func TestRecordCorruptAndVersion(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, RecordFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadRecord(dir); err == nil || !strings.Contains(err.Error(), "is corrupt") {
		t.Errorf("corrupt record: err = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, RecordFile), []byte(`{"version": 9}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadRecord(dir); err == nil || !strings.Contains(err.Error(), "format version 9") {
		t.Errorf("future record: err = %v", err)
	}
	if err := writeRecord("", Record{}); err == nil {
		t.Error("writeRecord without a directory succeeded")
	}
}
