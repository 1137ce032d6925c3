package cluster

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/flatmesh/flatmesh/internal/atomicfile"
)

// pinsFile holds the signing key pinned for every member name this agent
// has seen (trust on first sight).
const pinsFile = "pins.json"

const pinsFormat = 1

// maxPins bounds the pinned names: beyond it, new names are refused (a key
// holder inventing names must not grow the file without limit).
const maxPins = 4096

// pinStore maps member names to the signing key first seen for them.
// memberlist callbacks read and add pins (memory only); the notifier
// goroutine saves them. Safe for concurrent use.
type pinStore struct {
	mu    sync.Mutex
	pins  map[string]pin
	dirty bool
}

type pin struct {
	Key  PublicKey
	Seen time.Time // last time the name was seen alive (refreshed when saved)
}

func newPinStore() *pinStore { return &pinStore{pins: map[string]pin{}} }

// key returns the key pinned for name.
func (s *pinStore) key(name string) (PublicKey, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pins[name]
	return p.Key, ok
}

// conflict returns the key pinned for name when it differs from k.
func (s *pinStore) conflict(name string, k PublicKey) (PublicKey, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pins[name]
	return p.Key, ok && p.Key != k
}

// full reports whether name is new and no more names can be pinned.
func (s *pinStore) full(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pins[name]
	return !ok && len(s.pins) >= maxPins
}

// pinFirst pins k for name unless name has a pin; it reports whether it
// pinned. The caller checked conflict and full first.
func (s *pinStore) pinFirst(name string, k PublicKey, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pins[name]; ok || len(s.pins) >= maxPins {
		return false
	}
	s.pins[name] = pin{Key: k, Seen: now}
	s.dirty = true
	return true
}

// forget drops name's pin if it is k (a zero k: whatever it is). It
// reports whether a pin was dropped.
func (s *pinStore) forget(name string, k PublicKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pins[name]
	if !ok || (k != PublicKey{} && p.Key != k) {
		return false
	}
	delete(s.pins, name)
	s.dirty = true
	return true
}

// tidy refreshes the pins of the live names and drops the pins of names
// not seen alive for longer than reapAfter (the member table forgot them
// too). It reports whether something was dropped.
func (s *pinStore) tidy(alive []string, now time.Time, reapAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range alive {
		if p, ok := s.pins[n]; ok {
			p.Seen = now
			s.pins[n] = p
		}
	}
	for n, p := range s.pins {
		if now.Sub(p.Seen) > reapAfter {
			delete(s.pins, n)
			s.dirty = true
		}
	}
}

type savedPins struct {
	Version int                 `json:"version"`
	Pins    map[string]savedPin `json:"pins"`
}

type savedPin struct {
	Key  string    `json:"key"` // base64 ed25519 public key
	Seen time.Time `json:"seen"`
}

// save writes the pins to stateDir/pins.json when they changed.
func (s *pinStore) save(stateDir string) error {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	out := savedPins{Version: pinsFormat, Pins: make(map[string]savedPin, len(s.pins))}
	for n, p := range s.pins {
		out.Pins[n] = savedPin{Key: p.Key.String(), Seen: p.Seen.UTC()}
	}
	s.dirty = false
	s.mu.Unlock()
	data, err := json.MarshalIndent(out, "", "  ")
	if err == nil {
		err = atomicfile.Write(filepath.Join(stateDir, pinsFile), append(data, '\n'), atomicfile.Options{})
	}
	if err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("saving pinned keys: %w", err)
	}
	return nil
}

// loadPins reads stateDir/pins.json; a missing file is an empty store.
func loadPins(stateDir string) (*pinStore, error) {
	s := newPinStore()
	if stateDir == "" {
		return s, nil
	}
	var in savedPins
	path := filepath.Join(stateDir, pinsFile)
	if _, err := atomicfile.ReadVersioned(path, atomicfile.Versioned{Want: pinsFormat}, &in); err != nil {
		return nil, fmt.Errorf("reading pinned keys: %w", err)
	}
	for n, p := range in.Pins {
		b, err := base64.StdEncoding.DecodeString(p.Key)
		if err != nil || len(b) != len(PublicKey{}) || len(n) == 0 || len(n) > MaxNameLen {
			return nil, fmt.Errorf("reading pinned keys: %s: entry %q is not a name and a base64 ed25519 key", path, n)
		}
		var k PublicKey
		copy(k[:], b)
		s.pins[n] = pin{Key: k, Seen: p.Seen}
	}
	return s, nil
}
