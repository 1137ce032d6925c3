package cluster

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/flatmesh/flatmesh/internal/atomicfile"
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

// savePeers writes the snapshot atomically to stateDir/peers.json.
func savePeers(stateDir string, peers []savedPeer, now time.Time) error {
	snap := peersSnapshot{Version: peersFormat, Saved: now.UTC(), Peers: peers}
	data, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding peers: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(stateDir, peersFile), append(data, '\n'), atomicfile.Options{}); err != nil {
		return fmt.Errorf("saving peers: %w", err)
	}
	return nil
}

// loadPeers reads stateDir/peers.json; a missing file gives (nil, nil).
func loadPeers(stateDir string) ([]savedPeer, error) {
	path := filepath.Join(stateDir, peersFile)
	var snap peersSnapshot
	if _, err := atomicfile.ReadVersioned(path, atomicfile.Versioned{Want: peersFormat}, &snap); err != nil {
		return nil, fmt.Errorf("reading saved peers: %w", err)
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
