package cluster

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFileRoundTrip(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != KeySize {
		t.Fatalf("key is %d bytes", len(key))
	}
	other, _ := GenerateKey()
	if bytes.Equal(key, other) {
		t.Fatal("two generated keys are equal")
	}
	path := filepath.Join(t.TempDir(), "gossip.key")
	if err := WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	keys, err := ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !bytes.Equal(keys[0], key) {
		t.Errorf("read back %x, want %x", keys, key)
	}
	// No clobbering, and no temporary files left behind.
	if err := WriteKeyFile(path, other); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("overwrite: err = %v, want a refusal", err)
	}
	keys, _ = ReadKeyFile(path)
	if !bytes.Equal(keys[0], key) {
		t.Error("the existing key was replaced")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want just the key file", len(entries))
	}
}

func TestWriteKeyFileBadLength(t *testing.T) {
	if err := WriteKeyFile(filepath.Join(t.TempDir(), "k"), []byte("short")); err == nil {
		t.Error("5-byte key written")
	}
}

func TestReadKeyFileMultiAndErrors(t *testing.T) {
	dir := t.TempDir()
	k16 := bytes.Repeat([]byte{1}, 16)
	k32 := bytes.Repeat([]byte{2}, 32)
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	multi := write("multi", "# rotation\n"+EncodeKey(k32)+"\n\n  "+EncodeKey(k16)+"  \n")
	keys, err := ReadKeyFile(multi)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !bytes.Equal(keys[0], k32) || !bytes.Equal(keys[1], k16) {
		t.Errorf("keys = %x", keys)
	}
	cases := map[string]struct{ path, want string }{
		"missing":  {filepath.Join(dir, "nope"), "reading key file"},
		"base64":   {write("b64", "not base64!\n"), "line 1: not base64"},
		"length":   {write("len", EncodeKey([]byte("0123456789"))+"\n"), "line 1: key is 10 bytes"},
		"empty":    {write("empty", "# nothing\n\n"), "no keys"},
		"lateline": {write("late", EncodeKey(k16)+"\n%%%\n"), "line 2"},
	}
	for name, tc := range cases {
		_, err := ReadKeyFile(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to contain %q", name, err, tc.want)
		}
	}
}

func TestResolveKeys(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{7}, 32)
	if _, _, err := resolveKeys(nil, false, dir); err == nil ||
		!strings.Contains(err.Error(), "no gossip key: pass --key-file (flatmesh keygen writes one) or --insecure") {
		t.Errorf("no key: err = %v", err)
	}
	if _, _, err := resolveKeys([][]byte{key}, true, dir); err == nil {
		t.Error("keys plus insecure accepted")
	}
	if keys, _, err := resolveKeys(nil, true, dir); err != nil || keys != nil {
		t.Errorf("insecure: %v %v", keys, err)
	}
	if err := saveKeyring(dir, [][]byte{key}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, keyringFile))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("keyring mode %v", st.Mode().Perm())
	}
	keys, fromDisk, err := resolveKeys(nil, false, dir)
	if err != nil || !fromDisk || len(keys) != 1 || !bytes.Equal(keys[0], key) {
		t.Errorf("persisted keyring: %x %v %v", keys, fromDisk, err)
	}
	// Saving again replaces the keyring (key rotation).
	if err := saveKeyring(dir, [][]byte{bytes.Repeat([]byte{8}, 16), key}); err != nil {
		t.Fatal(err)
	}
	keys, _, _ = resolveKeys(nil, false, dir)
	if len(keys) != 2 || len(keys[0]) != 16 {
		t.Errorf("after rotation: %x", keys)
	}
}
