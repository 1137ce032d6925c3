package wireguard

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flatmesh/flatmesh/internal/atomicfile"
)

// KeyFile is the name of the private key file in the state directory.
const KeyFile = "wireguard.key"

// LoadOrCreateKey reads the private key at path (base64, as `wg genkey`
// writes it), or generates one and writes it (0600) when there is none. A
// key file readable by others is refused: the key is the host's identity in
// the overlay.
func LoadOrCreateKey(path string) (key wgtypes.Key, created bool, err error) {
	b, err := atomicfile.ReadPrivate(path) // refuses a key others can read
	switch {
	case errors.Is(err, fs.ErrNotExist):
		k, err := NewKey(path)
		return k, err == nil, err
	case err != nil:
		return wgtypes.Key{}, false, fmt.Errorf("reading wireguard key: %w", err)
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		return wgtypes.Key{}, false, fmt.Errorf("wireguard key %s: %w", path, err)
	}
	if k == (wgtypes.Key{}) {
		return wgtypes.Key{}, false, fmt.Errorf("wireguard key %s is all zeros", path)
	}
	return k, false, nil
}

// NewKey generates a private key and writes it to path (0600), replacing
// what was there.
func NewKey(path string) (wgtypes.Key, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("generating wireguard key: %w", err)
	}
	if err := atomicfile.Write(path, []byte(k.String()+"\n"), atomicfile.Options{Mode: 0o600}); err != nil {
		return wgtypes.Key{}, fmt.Errorf("saving wireguard key: %w", err)
	}
	return k, nil
}
