package ipam

import "errors"

// Message is one message from a peer, for HandleMessages.
type Message struct {
	// From is the member the gossip layer authenticated as its sender (the
	// signed origin of a broadcast, the signer of a direct message or of a
	// push-pull state: cluster verifies every one against the sender's
	// pinned key). "" means unknown (tests only): then senderOK checks only
	// the name the message gives itself.
	From    string
	Payload []byte
	// State marks a push-pull state (LocalState of a peer).
	State bool
}

// HandleMessage processes a message from a peer (broadcast or direct).
// Garbage is logged and dropped; it never panics.
func (a *Allocator) HandleMessage(from string, payload []byte) {
	_ = a.HandleMessages([]Message{{From: from, Payload: payload}})
}

// MergeRemoteState folds the LocalState of peer from (the authenticated
// sender of the push-pull exchange) into this host's view. It returns an
// error for garbage, another address space, or a map whose seed conflicts
// with this one (both used).
func (a *Allocator) MergeRemoteState(from string, buf []byte) error {
	return a.HandleMessages([]Message{{From: from, Payload: buf, State: true}})
}

// HandleMessages processes a batch of messages under one lock with one
// save: what must be durable before anyone hears of it (this host's own
// writes, blocks it received) is written once for the whole batch, before
// any reply or broadcast of the batch leaves. If that save fails, every
// write of the batch is rolled back and nothing is sent. The agent calls it
// from a worker goroutine, never from a memberlist callback (it may fsync).
// The error joins the problems of the state messages (garbage, another
// space, a seed conflict) and of the save.
func (a *Allocator) HandleMessages(msgs []Message) error {
	type decoded struct {
		m   Message
		msg any
		h   uint64
	}
	var errs []error
	list := make([]decoded, 0, len(msgs))
	for _, m := range msgs {
		msg, err := decodeMessage(m.Payload, a.sp.nBlocks)
		if err != nil {
			if m.State {
				errs = append(errs, err)
			}
			a.log.Debug("dropping a bad IPAM message", "from", m.From, "error", err)
			continue
		}
		list = append(list, decoded{m, msg, payloadHash(m.Payload)})
	}
	a.mu.Lock()
	defer a.unlockAndFlush()
	a.batch = true
	for _, d := range list {
		if a.merged[d.h] {
			continue
		}
		if err := a.handleOne(d.m, d.msg, d.h); err != nil && d.m.State {
			errs = append(errs, err)
		}
	}
	a.giveBackSurplus()
	a.batch = false
	if err := a.endBatch(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// handleOne processes one decoded message. Caller holds a.mu.
func (a *Allocator) handleOne(m Message, msg any, h uint64) error {
	a.rejected = false
	switch x := msg.(type) {
	case *wireState:
		if err := a.senderOK(m.From, x.sender.Name); err != nil {
			a.reject("state: %v", err)
			return nil
		}
		if err := a.mergeState(x); err != nil {
			a.log.Debug("ignoring IPAM state", "from", m.From, "error", err)
			return err
		}
		if x.seed == a.v.seed && !a.rejected {
			a.remember(h)
		}
	case *wireRequest:
		if m.State {
			return errors.New("merging IPAM state: not a state message")
		}
		if x.state == nil || a.senderOK(m.From, x.state.sender.Name) != nil {
			a.reject("request from %q", m.From)
			return nil
		}
		a.handleRequest(x)
	case *wireRefuse:
		if m.State {
			return errors.New("merging IPAM state: not a state message")
		}
		if a.senderOK(m.From, x.sender) != nil {
			a.reject("refusal from %q", m.From)
			return nil
		}
		a.handleRefuse(x)
	}
	return nil
}

// endBatch saves the writes of a batch, or rolls them all back (newest
// first) and drops what the batch would have sent. Caller holds a.mu.
func (a *Allocator) endBatch() error {
	txs := a.batchTx
	a.batchTx = nil
	if len(txs) == 0 {
		return nil
	}
	err := a.save()
	if err == nil {
		return nil
	}
	for i := len(txs) - 1; i >= 0; i-- {
		a.rollback(txs[i])
	}
	a.out = nil
	a.log.Error("could not persist IPAM state; the changes of this batch were rolled back", "error", err)
	return err
}

// LocalState is this host's whole view for a push-pull exchange. The
// result is cached until the view changes: callers must not modify it.
// memberlist calls it from a callback: when the allocator is busy (a batch
// being saved) it returns the last cached state instead of waiting (that
// state was persisted, or is merged data that may be saved lazily).
func (a *Allocator) LocalState() []byte {
	if !a.mu.TryLock() {
		if c := a.lastState.Load(); c != nil {
			return *c
		}
		a.mu.Lock()
	}
	defer a.mu.Unlock()
	if a.cache == nil || a.cacheGen != a.gen {
		a.cache = encodeState(a.v, a.sp.fp, a.self, a.viewUsed(), true, delta{})
		a.cacheGen = a.gen
		c := a.cache
		a.lastState.Store(&c)
	}
	return a.cache
}
