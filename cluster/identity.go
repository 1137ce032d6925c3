package cluster

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/flatmesh/flatmesh/internal/atomicfile"
)

// identityFile is this agent's ed25519 signing key inside Config.StateDir
// (base64 of the 32-byte seed, mode 0600). Its public half rides in the
// node metadata (Meta.SignKey); members pin it on first sight (pins.go).
const identityFile = "identity.key"

// sigContext prefixes every signed byte string, so a flatmesh gossip
// signature can never be taken for a signature of anything else.
const sigContext = "flatmesh gossip v1\x00"

// sigLen is the length of an ed25519 signature.
const sigLen = ed25519.SignatureSize

// PublicKey is an ed25519 public key as it travels in Meta.
type PublicKey [ed25519.PublicKeySize]byte

// String is the key in base64 (as `flatmesh peers` and the logs show it).
func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// loadOrCreateIdentity reads stateDir/identity.key, or generates it on the
// first start. Without a state dir (tests) the key lives in memory only.
// A key file readable by the group or others is refused.
func loadOrCreateIdentity(stateDir string) (key ed25519.PrivateKey, created bool, err error) {
	if stateDir == "" {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, true, err
	}
	path := filepath.Join(stateDir, identityFile)
	b, err := atomicfile.ReadPrivate(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("generating the signing key: %w", err)
		}
		text := base64.StdEncoding.EncodeToString(k.Seed()) + "\n"
		if err := atomicfile.Write(path, []byte(text), atomicfile.Options{Mode: 0o600, NoReplace: true}); err != nil {
			return nil, false, fmt.Errorf("saving the signing key: %w", err)
		}
		return k, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the signing key: %w", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, false, fmt.Errorf("signing key %s is not the base64 of %d bytes: remove it to generate a new one "+
			"(members then refuse this host until `flatmesh rmpeer NAME` on one of them)", path, ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), false, nil
}

// publicKey returns the public half of k in Meta's form.
func publicKey(k ed25519.PrivateKey) PublicKey {
	var p PublicKey
	copy(p[:], k.Public().(ed25519.PublicKey))
	return p
}

// signedBytes is what a signature covers: the context and the frame.
func signedBytes(frame []byte) []byte {
	return append([]byte(sigContext), frame...)
}

// seal appends the signature of frame (which must have spare capacity or
// is copied by append) and returns the sealed message.
func seal(k ed25519.PrivateKey, frame []byte) []byte {
	return append(frame, ed25519.Sign(k, signedBytes(frame))...)
}

// errBadSig is the reason for messages whose signature does not verify.
var errBadSig = errors.New("signature does not verify against the sender's pinned key")

// unseal checks the signature at the end of msg with key and returns the
// frame without it.
func unseal(key PublicKey, msg []byte) ([]byte, error) {
	if len(msg) < sigLen {
		return nil, errShortMsg
	}
	frame, sig := msg[:len(msg)-sigLen], msg[len(msg)-sigLen:]
	if !ed25519.Verify(key[:], signedBytes(frame), sig) {
		return nil, errBadSig
	}
	return frame, nil
}
