package agent

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/flatmesh/flatmesh/cluster"
)

// notifier speaks systemd's notify protocol (Type=notify in the unit):
// READY=1 once the API listens and a first pass programmed the data plane, STATUS= lines
// for `systemctl status`, WATCHDOG=1 after each reconcile pass (so a stuck
// loop gets the agent restarted), STOPPING=1 on leave. Outside systemd
// (no NOTIFY_SOCKET) every call does nothing. The zero value is ready to
// use; safe for concurrent use.
type notifier struct {
	once     sync.Once
	send     func(state string) (bool, error) // daemon.SdNotify unless a test sets it
	watchdog time.Duration                    // 0: the unit has no WatchdogSec

	mu     sync.Mutex
	status string // last STATUS= sent, to send only changes
	ready  bool   // READY=1 sent
}

func (n *notifier) init() {
	n.once.Do(func() {
		if n.send == nil {
			n.send = func(s string) (bool, error) { return daemon.SdNotify(false, s) }
			// WATCHDOG_USEC (and WATCHDOG_PID, when set, naming us).
			n.watchdog, _ = daemon.SdWatchdogEnabled(false)
		}
	})
}

// notify sends the state lines; errors only matter to a person debugging
// the unit, so they are returned for logging and never stop the agent.
func (n *notifier) notify(lines ...string) error {
	n.init()
	_, err := n.send(strings.Join(lines, "\n"))
	return err
}

// setStatus sends STATUS=s when it differs from the last one.
func (n *notifier) setStatus(s string, extra ...string) error {
	n.mu.Lock()
	same := s == n.status
	n.status = s
	n.mu.Unlock()
	if same && len(extra) == 0 {
		return nil
	}
	return n.notify(append(extra, "STATUS="+s)...)
}

// stopping tells systemd a graceful stop has begun.
func (n *notifier) stopping(status string) error { return n.setStatus(status, "STOPPING=1") }

// passed is called by the reconcile loop after each pass: READY=1 after the
// first pass that programmed the data plane (the API already listens, so
// `systemctl start` returns when the host is usable; while passes fail,
// start waits and STATUS says why), a watchdog ping (passes run at least
// every resyncInterval, well inside WatchdogSec) and the status when it
// changed.
func (n *notifier) passed(status string, ok bool) error {
	n.init()
	var extra []string
	n.mu.Lock()
	if ok && !n.ready {
		n.ready = true
		extra = append(extra, "READY=1")
	}
	n.mu.Unlock()
	if n.watchdog > 0 {
		extra = append(extra, "WATCHDOG=1")
	}
	return n.setStatus(status, extra...)
}

// passStatus is the STATUS line after a pass, for a person reading
// `systemctl status flatmesh`.
func passStatus(mode string, members []cluster.Peer, err error) string {
	alive := 0
	for _, p := range members {
		if p.State == cluster.StateAlive {
			alive++
		}
	}
	s := fmt.Sprintf("%s mode, %d of %d members alive", mode, alive, len(members))
	if err != nil {
		return s + ", reconcile failing (retrying): " + firstLine(err.Error())
	}
	return s + ", data plane in sync"
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// The hooks Run and the reconcile loop call (one line each there).

func (a *Agent) notifyStatus(s string) {
	if err := a.sd.setStatus(s); err != nil {
		a.log.Debug("systemd notify failed", "error", err)
	}
}

func (a *Agent) notifyListening() {
	a.notifyStatus(fmt.Sprintf("%s mode, API on %s, joining the cluster and programming the data plane", a.cfg.Mode, a.cfg.Socket))
}

func (a *Agent) notifyPass(err error) {
	if nerr := a.sd.passed(passStatus(a.cfg.Mode, a.cl.Members(), err), err == nil); nerr != nil {
		a.log.Warn("systemd notify failed", "error", nerr)
	}
}

func (a *Agent) notifyStopping(why string) {
	if err := a.sd.stopping("leaving the cluster: " + why); err != nil {
		a.log.Debug("systemd notify failed", "error", err)
	}
}
