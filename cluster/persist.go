package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// peersFile is the name of the member snapshot inside Config.StateDir.
const peersFile = "peers.json"

// peersFormat is the version of the peers.json layout.
const peersFormat = 1

// savedPeer is one member address in peers.json.
type savedPeer struct {
	Name string     `json:"name"`
	Addr netip.Addr `json:"addr"`
	Port uint16     `json:"port"`
}

type peersSnapshot struct {
	Version int         `json:"version"`
	Saved   time.Time   `json:"saved"`
	Peers   []savedPeer `json:"peers"`
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory (fsynced), then renames it into place (replace) or links it
// (no replace: fails if path exists), and fsyncs the directory. A crash
// leaves either the old file or the new one, never a torn one.
func writeFileAtomic(path string, data []byte, mode os.FileMode, replace bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("creating temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil || !replace {
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err == nil {
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if replace {
		err = os.Rename(tmp, path)
	} else {
		err = os.Link(tmp, path) // fails with EEXIST instead of clobbering
	}
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists: refusing to overwrite it", path)
		}
		return fmt.Errorf("moving %s into place: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// savePeers writes the snapshot atomically to stateDir/peers.json.
func savePeers(stateDir string, peers []savedPeer, now time.Time) error {
	snap := peersSnapshot{Version: peersFormat, Saved: now.UTC(), Peers: peers}
	data, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding peers: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(stateDir, peersFile), append(data, '\n'), 0o600, true); err != nil {
		return fmt.Errorf("saving peers: %w", err)
	}
	return nil
}

// loadPeers reads stateDir/peers.json; a missing file gives (nil, nil).
func loadPeers(stateDir string) ([]savedPeer, error) {
	path := filepath.Join(stateDir, peersFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading saved peers: %w", err)
	}
	var snap peersSnapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return nil, fmt.Errorf("reading saved peers %s: %w", path, err)
	}
	if snap.Version != peersFormat {
		return nil, fmt.Errorf("reading saved peers %s: unknown format version %d", path, snap.Version)
	}
	return snap.Peers, nil
}

// snapshotPeers picks the members worth rejoining: everyone but self and
// the members that left gracefully. Failed members are kept on purpose:
// after a power cut every host saw the others fail, and they are exactly the
// ones to rejoin. The result is sorted by name, so equal sets compare equal.
func snapshotPeers(self string, members []Peer) []savedPeer {
	var out []savedPeer
	for _, p := range members {
		if p.Name == self || p.State == StateLeft || !p.Addr.IsValid() {
			continue
		}
		out = append(out, savedPeer{Name: p.Name, Addr: p.Addr, Port: p.Port})
	}
	slices.SortFunc(out, func(a, b savedPeer) int { return strings.Compare(a.Name, b.Name) })
	return out
}
