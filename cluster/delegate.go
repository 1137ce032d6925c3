package cluster

import (
	"github.com/hashicorp/memberlist"
)

// delegate is the memberlist Delegate and EventDelegate of a Cluster.
// memberlist calls these from its network goroutines, the event methods with
// its node lock held: none of them blocks or calls back into memberlist.
type delegate struct{ c *Cluster }

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)

// NodeMeta returns the encoded current metadata (validated by New and
// UpdateMeta, so always within limit).
func (d *delegate) NodeMeta(limit int) []byte {
	d.c.metaMu.Lock()
	defer d.c.metaMu.Unlock()
	if len(d.c.metaBytes) > limit {
		return nil // cannot happen: Encode stays under MetaMaxSize
	}
	return append([]byte(nil), d.c.metaBytes...)
}

func (d *delegate) NotifyMsg(buf []byte) { d.c.msgs.receive(buf) }

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.c.msgs.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte {
	if d.c.cfg.App == nil {
		return nil
	}
	return d.c.msgs.state(d.c.cfg.App.LocalState(join))
}

// MergeRemoteState verifies the state's signature (memberlist does not say
// who sent it: the signed frame does) and hands it on with its sender.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if d.c.cfg.App == nil || len(buf) == 0 {
		return
	}
	if from, state, ok := d.c.msgs.receiveState(buf); ok {
		d.c.cfg.App.MergeRemoteState(from, state, join)
	}
}

// record stores n in the member table with state st (alive), decoding its
// meta; NotifyAlive already refused nodes whose meta does not decode.
func (d *delegate) record(n *memberlist.Node) {
	meta, err := DecodeMeta(n.Meta)
	if err != nil {
		d.c.log.Warn("member with unreadable metadata", "peer", n.Name, "error", err)
	}
	d.c.members.set(n.Name, addrFromIP(n.Addr), n.Port, StateAlive, meta)
	d.c.signal()
}

func (d *delegate) NotifyJoin(n *memberlist.Node) {
	d.record(n)
	if n.Name != d.c.cfg.Name {
		d.c.log.Info("member joined", "peer", n.Name, "addr", n.Address())
	}
}

func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	d.record(n)
	d.c.log.Debug("member updated", "peer", n.Name)
}

// NotifyLeave marks the node left when it told us it was leaving (the
// direct message of Cluster.Leave, or Meta.Leaving in its last metadata);
// failed otherwise. memberlist itself knows (a dead message sent by the node
// about itself), but v0.7 keeps that state private: Node.State is not
// maintained for the nodes it passes to delegates.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	meta, _ := DecodeMeta(n.Meta)
	st := d.c.members.gone(n.Name, addrFromIP(n.Addr), n.Port, meta)
	d.c.signal()
	if n.Name != d.c.cfg.Name {
		d.c.log.Info("member gone", "peer", n.Name, "state", st)
	}
}
