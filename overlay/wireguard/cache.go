package wireguard

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flatmesh/flatmesh/internal/atomicfile"
)

// The peer cache lets a restarted agent program its userspace device before
// gossip converges. It is a hint: the first pass replaces it.
const (
	maxCachedPeers = 4096
	maxCacheBytes  = 4 << 20
)

type cachedPeer struct {
	Name       string         `json:"name"`
	PublicKey  string         `json:"public_key"`
	Endpoint   netip.AddrPort `json:"endpoint"`
	AllowedIPs []netip.Prefix `json:"allowed_ips"`
	Keepalive  int            `json:"keepalive_seconds"`
}

// SavePeers writes the peers (public data only) to path.
func SavePeers(path string, peers []Peer) error {
	out := make([]cachedPeer, 0, len(peers))
	for _, p := range peers {
		out = append(out, cachedPeer{Name: p.Name, PublicKey: p.PublicKey.String(), Endpoint: p.Endpoint,
			AllowedIPs: p.AllowedIPs, Keepalive: int(p.Keepalive / time.Second)})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, atomicfile.Options{Mode: 0o600, NoSync: true})
}

// LoadPeers reads what SavePeers wrote; no file is no peers. Every entry is
// checked (the file could be damaged); a bad one fails the whole file.
func LoadPeers(path string) ([]Peer, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCacheBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCacheBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxCacheBytes)
	}
	var in []cachedPeer
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	if len(in) > maxCachedPeers {
		return nil, fmt.Errorf("%s lists %d peers, more than %d", path, len(in), maxCachedPeers)
	}
	out := make([]Peer, 0, len(in))
	for i, c := range in {
		k, err := wgtypes.ParseKey(c.PublicKey)
		if err != nil || k == (wgtypes.Key{}) {
			return nil, fmt.Errorf("%s: peer %d: bad public key", path, i)
		}
		if !c.Endpoint.IsValid() || c.Endpoint.Port() == 0 || c.Keepalive < 0 || c.Keepalive > 65535 {
			return nil, fmt.Errorf("%s: peer %d: bad endpoint or keepalive", path, i)
		}
		for _, a := range c.AllowedIPs {
			if !a.IsValid() {
				return nil, fmt.Errorf("%s: peer %d: bad allowed ip", path, i)
			}
		}
		out = append(out, Peer{Name: c.Name, PublicKey: k, Endpoint: c.Endpoint, AllowedIPs: normPrefixes(c.AllowedIPs),
			Keepalive: time.Duration(c.Keepalive) * time.Second})
	}
	sortPeers(out)
	return out, nil
}
