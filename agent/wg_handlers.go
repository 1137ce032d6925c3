package agent

import (
	"errors"
	"net/http"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flatmesh/flatmesh/agent/api"
	"github.com/flatmesh/flatmesh/cluster"
	"github.com/flatmesh/flatmesh/overlay/wireguard"
)

// wgPlane is what the API needs of the WireGuard data plane. Safe for
// concurrent use.
type wgPlane interface {
	Rotate() (wgtypes.Key, error)
	Backend() string
	PeerStats() (map[wgtypes.Key]wireguard.PeerStats, error)
}

// wgBackend is "kernel" or "userspace" in wireguard mode, else "".
func wgBackend(p dataPlane) string {
	if w, ok := p.(wgPlane); ok {
		return w.Backend()
	}
	return ""
}

// handleWGRotate makes a new key pair on this host and gossips its public
// key; peers switch to it at their next pass.
func (a *Agent) handleWGRotate(r *http.Request) (any, error) {
	w, ok := a.plane.(wgPlane)
	if !ok {
		return nil, api.BadRequest(errors.New("key rotation is for wireguard mode; this agent runs " + a.cfg.Mode))
	}
	pub, err := w.Rotate()
	if err != nil {
		return nil, err
	}
	if err := a.cl.UpdateMeta(func(m *cluster.Meta) { m.WGPublicKey = pub }); err != nil {
		return nil, err
	}
	a.poke()
	return api.WGRotateResponse{PublicKey: pub.String()}, nil
}

// addWGStats fills the WireGuard fields of the peer list in wireguard mode
// (members are in the order of out).
func (a *Agent) addWGStats(out []api.Peer, members []cluster.Peer) {
	w, ok := a.plane.(wgPlane)
	if !ok {
		return
	}
	stats, err := w.PeerStats()
	if err != nil {
		a.log.Debug("reading wireguard peer counters", "error", err)
	}
	for i, m := range members {
		if i >= len(out) || m.Meta.WGPublicKey == (wgtypes.Key{}) {
			continue
		}
		out[i].WGPublicKey = wgtypes.Key(m.Meta.WGPublicKey).String()
		s, ok := stats[m.Meta.WGPublicKey]
		if !ok {
			continue
		}
		if !s.LastHandshake.IsZero() {
			out[i].WGHandshake = s.LastHandshake.UTC().Format(time.RFC3339)
		}
		out[i].WGRxBytes, out[i].WGTxBytes = s.RxBytes, s.TxBytes
	}
}
