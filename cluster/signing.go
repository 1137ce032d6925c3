package cluster

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// Signing and pins, the Cluster side. Every application message (broadcast,
// direct, leave notice, push-pull state) is signed with this agent's
// identity key; receivers verify it against the key they pinned for the
// sender's name the first time they saw that member (Meta.SignKey), so the
// "from" every AppDelegate method gets is authenticated. A member whose
// metadata later presents another key is refused (refuser.checkPeer).

// loadIdentity loads (or creates) the identity key and the pins, sets
// Meta.SignKey and encodes the metadata. Called once by prepare.
func (c *Cluster) loadIdentity() (ed25519.PrivateKey, error) {
	key, created, err := loadOrCreateIdentity(c.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	pins, err := loadPins(c.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("%w (remove the file to pin every member again on first sight)", err)
	}
	c.pins = pins
	c.signKey = publicKey(key)
	if created && c.cfg.StateDir != "" {
		c.log.Info("generated this agent's signing key", "file", identityFile, "public_key", c.signKey)
	}
	c.cfg.Meta.SignKey = c.signKey
	c.meta.SignKey = c.signKey
	enc, err := c.meta.Encode()
	if err != nil {
		return nil, err
	}
	c.metaBytes = enc
	return key, nil
}

// SigningKey is the public half of this agent's identity key.
func (c *Cluster) SigningKey() PublicKey { return c.signKey }

// PinnedKey returns the key this agent pinned for name.
func (c *Cluster) PinnedKey(name string) (PublicKey, bool) { return c.pins.key(name) }

// Dropped returns how many received messages were dropped, by reason
// (unsigned, non-member, bad-signature, malformed, misaddressed,
// unknown-kind).
func (c *Cluster) Dropped() map[string]uint64 { return c.msgs.drops.snapshot() }

// ForgetPin forgets the key pinned for name, here and (by a signed
// broadcast) on every member, so that a reinstalled host that lost its
// identity key can rejoin under its old name. name must not be a live
// member: a live member's key cannot be replaced this way.
func (c *Cluster) ForgetPin(name string) error {
	if name == c.cfg.Name {
		return errors.New("forgetting this agent's own key: run the command on another member")
	}
	if p, ok := c.members.get(name); ok && p.State.Live() {
		return fmt.Errorf("%q is a live member: stop its agent and wait until it is failed first", name)
	}
	k, ok := c.pins.key(name)
	if !ok {
		return nil
	}
	c.pins.forget(name, k)
	c.msgs.forgetPin(name, k)
	c.log.Info("forgot the signing key pinned for a member", "peer", name, "key", k)
	c.signal()
	return nil
}

// forgetRemote applies a member's (verified) request to forget a pin: only
// the exact key, never ours, never a live member's.
func (c *Cluster) forgetRemote(from, name string, k PublicKey) {
	if name == c.cfg.Name || k == (PublicKey{}) {
		return
	}
	if p, ok := c.members.get(name); ok && p.State.Live() {
		c.log.Warn("a member asked to forget the key of a live member: ignored", "from", from, "peer", name)
		return
	}
	if c.pins.forget(name, k) {
		c.log.Info("forgot the signing key pinned for a member (rmpeer on another member)", "from", from, "peer", name)
		c.signal()
	}
}

// persistPins saves pins.json when the pins changed, after refreshing the
// live members' pins and dropping those not seen for ReapAfter (only once
// other members were seen in this run, as for peers.json).
func (c *Cluster) persistPins() {
	if c.cfg.StateDir == "" {
		return
	}
	if c.members.sawOthers() {
		var alive []string
		for _, p := range c.members.list() {
			if p.State.Live() {
				alive = append(alive, p.Name)
			}
		}
		c.pins.tidy(alive, time.Now(), c.members.reapAfter)
	}
	if err := c.pins.save(c.cfg.StateDir); err != nil {
		c.log.Warn("could not save the pinned keys", "error", err)
	}
}

// known reports whether name is in the member table (any state).
func (t *memberTable) known(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.m[name]
	return ok
}

// notifyRefused tells node n (by a signed UDP notice to its address) why
// we refuse it: a pinned-key conflict is seen only by the members, so
// without it the refused host would believe it joined. Called from
// memberlist callbacks: the send runs on its own goroutine.
func (c *Cluster) notifyRefused(e *RefusedError, n *memberlist.Node) {
	ml := c.ml
	if ml == nil {
		return
	}
	addr := memberlist.Address{Addr: netip.AddrPortFrom(addrFromIP(n.Addr), n.Port).String(), Name: n.Name}
	msg := c.msgs.refusal(n.Name, e.Reason)
	go func() {
		if err := ml.SendToAddress(addr, msg); err != nil {
			c.log.Debug("could not tell a refused node why", "peer", n.Name, "error", err)
		}
	}()
}

// awaitRefusal gives the members joined a moment to say they refuse this
// agent (notifyRefused on their side) and returns such a refusal noted
// since start.
func (c *Cluster) awaitRefusal(start time.Time) *RefusedError {
	deadline := time.Now().Add(c.timing.refuseWait)
	for {
		if e := c.refuse.refusedSelf(start); e != nil {
			return e
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}
