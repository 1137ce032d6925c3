package cluster

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flatmesh/flatmesh/internal/atomicfile"
	"github.com/hashicorp/memberlist"
)

// KeySize is the length of keys made by GenerateKey (AES-256).
const KeySize = 32

// keyringFile is the name of the persisted keyring inside Config.StateDir.
const keyringFile = "keyring"

// GenerateKey returns a new random 32-byte gossip key.
func GenerateKey() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating gossip key: %w", err)
	}
	return key, nil
}

// EncodeKey returns the text form of a key, as key files hold it (base64).
func EncodeKey(key []byte) string {
	return base64.StdEncoding.EncodeToString(key)
}

// validKeyLen reports whether n is an AES key length memberlist accepts.
func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }

// WriteKeyFile writes key to path as one base64 line with mode 0600. The
// write is atomic (temporary file, fsync, link into place) and refuses to
// replace an existing file: losing the old key would cut this host off from
// its cluster. The path "-" (stdout) is the caller's business.
func WriteKeyFile(path string, key []byte) error {
	if !validKeyLen(len(key)) {
		return fmt.Errorf("writing key file %s: key is %d bytes, want 16, 24 or 32", path, len(key))
	}
	if err := atomicfile.Write(path, []byte(EncodeKey(key)+"\n"), atomicfile.Options{NoReplace: true}); err != nil {
		return fmt.Errorf("writing key file: %w", err)
	}
	return nil
}

// ReadKeyFile reads one or more base64 keys, one per line; the first is the
// primary key (used to encrypt), the others are accepted for decryption
// (key rotation). Blank lines and lines starting with '#' are skipped.
func ReadKeyFile(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	keys, err := parseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return keys, nil
}

func parseKeys(data []byte) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64: %w", n, err)
		}
		if !validKeyLen(len(key)) {
			return nil, fmt.Errorf("line %d: key is %d bytes, want 16, 24 or 32 (make one with flatmesh keygen)", n, len(key))
		}
		keys = append(keys, key)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys in file (make one with flatmesh keygen)")
	}
	return keys, nil
}

// newKeyring builds a memberlist keyring with keys[0] as the primary key.
func newKeyring(keys [][]byte) (*memberlist.Keyring, error) {
	for i, k := range keys {
		if !validKeyLen(len(k)) {
			return nil, fmt.Errorf("gossip key %d is %d bytes, want 16, 24 or 32", i+1, len(k))
		}
	}
	kr, err := memberlist.NewKeyring(keys, keys[0])
	if err != nil {
		return nil, fmt.Errorf("building keyring: %w", err)
	}
	return kr, nil
}

// resolveKeys decides the gossip keys from the configuration and the keyring
// persisted in stateDir. Order: Config.Keys, else the persisted keyring, else
// Insecure (no encryption), else an error. Insecure together with Keys is a
// contradiction and an error. Insecure wins over a persisted keyring (the
// operator asked for it explicitly); the keyring file is left in place.
// fromDisk reports that the keys came from the persisted keyring.
func resolveKeys(keys [][]byte, insecure bool, stateDir string) (out [][]byte, fromDisk bool, err error) {
	if len(keys) > 0 {
		if insecure {
			return nil, false, errors.New("both gossip keys and --insecure given: pick one")
		}
		return keys, false, nil
	}
	if insecure {
		return nil, false, nil
	}
	if stateDir != "" {
		path := filepath.Join(stateDir, keyringFile)
		saved, err := ReadKeyFile(path)
		switch {
		case err == nil:
			return saved, true, nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, false, fmt.Errorf("loading persisted keyring: %w", err)
		}
	}
	return nil, false, errors.New("no gossip key: pass --key-file (flatmesh keygen writes one) or --insecure")
}

// saveKeyring persists keys (primary first) to stateDir/keyring, mode 0600.
func saveKeyring(stateDir string, keys [][]byte) error {
	var b strings.Builder
	b.WriteString("# flatmesh gossip keyring (primary first); written by the agent\n")
	for _, k := range keys {
		b.WriteString(EncodeKey(k) + "\n")
	}
	if err := atomicfile.Write(filepath.Join(stateDir, keyringFile), []byte(b.String()), atomicfile.Options{}); err != nil {
		return fmt.Errorf("saving keyring: %w", err)
	}
	return nil
}
