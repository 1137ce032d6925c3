package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// leaveMemory is how long a member's "I am leaving" notice counts: its
// disappearance within that time is "left", later it is "failed".
const leaveMemory = time.Minute

// noticeWait bounds how long Leave waits for its direct leave notices.
const noticeWait = 300 * time.Millisecond

// leavePoll is how often Leave checks whether any peer is still alive.
const leavePoll = 10 * time.Millisecond

// Leave announces that this node leaves (peers then mark it "left", not
// "failed"), waits for the announcement to go out, and saves peers.json.
// memberlist keeps running until Shutdown. Calling Leave again is a no-op;
// after Shutdown it is an error.
//
// Peers learn it three ways: a direct (TCP) notice to every live member,
// Meta.Leaving in our metadata, and memberlist's own leave message. The wait
// ends as soon as memberlist has sent its message (retransmissions done),
// when no other member is alive any more (every peer left at the same time,
// as `flatmesh lab down` does: memberlist would otherwise wait for the whole
// timeout for a broadcast nobody can receive), or after timeout.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.stateMu.Lock()
	if c.down {
		c.stateMu.Unlock()
		return errors.New("leaving: the cluster is shut down")
	}
	if c.left {
		c.stateMu.Unlock()
		return nil
	}
	c.left = true
	close(c.leaving)
	c.stateMu.Unlock()
	start := time.Now()
	c.metaMu.Lock()
	c.meta.Leaving = true
	c.metaBytes, _ = c.meta.Encode() // cannot fail: only a flag changed
	c.metaMu.Unlock()
	// A nanosecond: queue the alive message carrying Leaving, do not wait.
	_ = c.ml.UpdateNode(time.Nanosecond)
	c.announceLeave()
	rest := timeout - time.Since(start)
	if timeout > 0 && rest <= 0 {
		rest = time.Millisecond
	}
	done := make(chan error, 1)
	go func() { done <- c.ml.Leave(rest) }()
	c.persistPeers()
	c.persistPins()
	if err := c.waitLeave(done, rest); err != nil {
		return fmt.Errorf("leaving the cluster: %w", err)
	}
	c.log.Info("left the cluster")
	return nil
}

// announceLeave tells every live member directly (TCP) that we leave,
// waiting at most noticeWait: a peer that does not answer that fast is
// left to memberlist's own leave message and our metadata flag.
func (c *Cluster) announceLeave() {
	var wg sync.WaitGroup
	for _, n := range c.ml.Members() {
		if n.Name == c.cfg.Name {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.ml.SendReliable(n, c.msgs.leaving(n.Name)); err != nil {
				c.log.Debug("leave notice not delivered", "peer", n.Name, "error", err)
			}
		}()
	}
	sent := make(chan struct{})
	go func() { wg.Wait(); close(sent) }()
	select {
	case <-sent:
	case <-time.After(noticeWait):
	}
}

// waitLeave waits for memberlist's Leave (done), for the moment no other
// member is alive, or for timeout (0: no limit besides the other two).
func (c *Cluster) waitLeave(done <-chan error, timeout time.Duration) error {
	tick := time.NewTicker(leavePoll)
	defer tick.Stop()
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	for {
		select {
		case err := <-done:
			return err
		case <-deadline:
			return errors.New("timeout waiting for the leave broadcast")
		case <-tick.C:
			if c.ml.NumMembers() <= 1 {
				c.log.Debug("no other member is alive: not waiting for the leave broadcast")
				return nil
			}
		}
	}
}

// lateNotice is how long after a member was marked failed its leave notice
// still turns it into "left": the notice goes over TCP and memberlist's
// dead message over UDP, and on a loaded host the dead message can win.
const lateNotice = 10 * time.Second

// noteLeaving records a member's leave notice (called from NotifyMsg). It
// reports whether the member's state changed (a late notice for a member
// that was just marked failed).
func (t *memberTable) noteLeaving(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[name]
	switch {
	case e == nil:
		return false
	case e.peer.State.Live():
		t.leaving[name] = t.now()
	case e.peer.State == StateFailed && t.now().Sub(e.since) < lateNotice:
		e.peer.State = StateLeft
		return true
	}
	return false
}

// suspectLine is how memberlist v0.7 logs that this node's failure detector
// starts suspecting a member ("Suspect NAME has failed, no acks received").
// memberlist tells its delegates nothing about suspicion and keeps node
// states private, so this line is the only signal it gives.
var (
	suspectPrefix = []byte("memberlist: Suspect ")
	suspectSuffix = []byte(" has failed, no acks received")
)

// noteLogLine marks a member suspect when memberlist logs that it suspects
// it. Called with memberlist's locks possibly held: only our own lock here.
func (t *memberTable) noteLogLine(line []byte) {
	i := bytes.Index(line, suspectPrefix)
	if i < 0 {
		return
	}
	rest := line[i+len(suspectPrefix):]
	j := bytes.Index(rest, suspectSuffix)
	if j <= 0 {
		return
	}
	name := string(rest[:j])
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.m[name]; e != nil && e.peer.State == StateAlive {
		t.suspect[name] = true
		if t.onSuspect != nil {
			t.onSuspect()
		}
	}
}

// clearSuspect: name answered a probe.
func (t *memberTable) clearSuspect(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.suspect, name)
}

// pingDelegate clears suspicion when a probe of the member is answered.
type pingDelegate struct{ t *memberTable }

var _ memberlist.PingDelegate = (*pingDelegate)(nil)

func (p *pingDelegate) AckPayload() []byte { return nil }

func (p *pingDelegate) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	p.t.clearSuspect(other.Name)
}
