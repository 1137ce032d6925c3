package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// event performs one random action.
func (s *sim) event() {
	switch x := s.r.Intn(1000); {
	case x < 420:
		s.allocate()
	case x < 650:
		s.release()
	case x < 680:
		s.partition()
	case x < 720:
		s.healNet()
	case x < 740:
		s.crash()
	case x < 800:
		s.restart()
	case x < 808:
		s.kill()
	case x < 850:
		s.rmpeer()
	case x < 865:
		s.join()
	case x < 871:
		s.leave()
	case x < 880:
		s.revive()
	default:
		s.weather()
	}
}

func (s *sim) pick() *simHost {
	up := s.up()
	if len(up) == 0 {
		return nil
	}
	return up[s.r.Intn(len(up))]
}

func (s *sim) allocate() {
	h := s.pick()
	if h == nil {
		return
	}
	s.nextID++
	r := Request{ID: fmt.Sprintf("c%d", s.nextID), IfName: "eth0", Name: fmt.Sprintf("n%d", s.nextID)}
	if s.r.Intn(10) == 0 {
		r.Want = h.a.sp.addrAt(uint64(s.r.Int63n(int64(h.a.sp.total))))
	}
	if s.attempt(h, r, false) {
		h.pending = append(h.pending, r)
	}
}

// attempt runs one allocation step and records the outcome; it reports
// whether the request is still waiting.
func (s *sim) attempt(h *simHost, r Request, probe bool) bool {
	al, _, err := h.a.attempt(r)
	var w *waitError
	switch {
	case err == nil:
		addr := al.Prefix.Addr()
		if old, ok := h.cont[allocKey{r.ID, r.IfName}]; ok && old != addr {
			s.fatalf("%s: %s moved from %s to %s", h.name, r.ID, old, addr)
		}
		h.cont[allocKey{r.ID, r.IfName}] = addr
		s.noteUse(h, addr)
		s.stats["allocated"]++
		s.logf("%s allocated %s for %s", h.name, addr, r.ID)
		return false
	case errors.As(err, &w):
		return true
	case errors.Is(err, ErrNoSpace):
		s.stats["no space"]++
		if probe {
			s.stats["probe no space"]++
		}
	default:
		s.stats["refused"]++
	}
	return false
}

func (s *sim) retryPending(probe bool) {
	for _, h := range s.up() {
		var keep []Request
		for _, r := range h.pending {
			if s.attempt(h, r, probe) {
				keep = append(keep, r)
			}
		}
		h.pending = keep
	}
}

func (s *sim) release() {
	h := s.pick()
	if h == nil || len(h.cont) == 0 {
		return
	}
	keys := make([]allocKey, 0, len(h.cont))
	for k := range h.cont {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ID < keys[j].ID })
	k := keys[s.r.Intn(len(keys))]
	if err := h.a.Release(k.ID, k.IfName); err != nil {
		s.fatalf("release on %s: %v", h.name, err)
	}
	s.logf("%s released %s (%s)", h.name, h.cont[k], k.ID)
	delete(h.cont, k)
	s.stats["released"]++
}

func (s *sim) partition() {
	k := 2 + s.r.Intn(2)
	for _, h := range s.hosts {
		h.comp = s.r.Intn(k)
	}
	if s.mal != nil {
		s.mal.comp = s.r.Intn(k)
	}
	s.logf("partition into %d parts", k)
	s.stats["partitions"]++
}

func (s *sim) healNet() {
	for _, h := range s.hosts {
		h.comp = 0
	}
	if s.mal != nil {
		s.mal.comp = 0
	}
}

func (s *sim) weather() {
	s.loss = []float64{0, 0.05, 0.2, 0.5}[s.r.Intn(4)]
	s.dup = []float64{0, 0.05, 0.2}[s.r.Intn(3)]
	s.delay = s.r.Intn(4)
}

// crash stops an agent; its containers keep running.
func (s *sim) crash() {
	h := s.pick()
	if h == nil {
		return
	}
	s.logf("%s crashed (seed %016x)", h.name, h.a.v.seed)
	h.final, h.a, h.state, h.pending = h.a, nil, stDown, nil
	s.stats["crashes"]++
}

func (s *sim) restart() {
	for _, h := range s.hosts {
		if h.state == stDown && s.r.Intn(3) == 0 {
			s.openHost(h, false)
			s.logf("%s restarted (seed %016x)", h.name, h.a.v.seed)
			s.stats["restarts"]++
			return
		}
	}
}

// kill takes a host away for good: its containers die with it.
func (s *sim) kill() {
	var cands []*simHost
	for _, h := range s.hosts {
		if h.state != stDead && s.byName[h.name] == h {
			cands = append(cands, h)
		}
	}
	if len(cands) <= 2 {
		return
	}
	h := cands[s.r.Intn(len(cands))]
	if h.a != nil {
		h.final = h.a
	}
	h.a, h.state, h.cont, h.pending = nil, stDead, map[allocKey]netip.Addr{}, nil
	s.logf("%s died", h.name)
	s.stats["deaths"]++
}

// sawFinal is rmpeer's precondition: r's view holds everything the dead
// host x knew (so all of x's own writes).
func sawFinal(r, x *Allocator) bool {
	if x.v.seed == 0 || r.v.seed != x.v.seed {
		return false
	}
	for b, e := range x.v.blocks {
		if entryLess(r.v.blocks[b], e) {
			return false
		}
	}
	for id, h := range x.v.hosts {
		if mine, ok := r.v.hosts[id]; id.Name == x.self.Name && (!ok || mine.Ver < h.Ver) {
			return false
		}
	}
	return true
}

// rmpeer removes a dead host on one to three hosts that satisfy the
// precondition, possibly on different sides of a partition, or runs
// rmpeer again for one already removed.
func (s *sim) rmpeer() {
	var dead []*simHost
	for _, h := range s.hosts {
		if h.state == stDead && h.final != nil && s.byName[h.name] == h {
			dead = append(dead, h)
		}
	}
	if len(dead) == 0 {
		return
	}
	x := dead[s.r.Intn(len(dead))]
	var ok []*simHost
	for _, h := range s.up() {
		if sawFinal(h.a, x.final) {
			ok = append(ok, h)
		}
	}
	s.r.Shuffle(len(ok), func(i, j int) { ok[i], ok[j] = ok[j], ok[i] })
	if len(ok) > 3 {
		ok = ok[:1+s.r.Intn(3)]
	}
	for _, h := range ok {
		err := h.a.RemovePeer(x.name, s.aliveFor(h))
		if err != nil && !strings.Contains(err.Error(), "unknown peer") {
			s.fatalf("rmpeer %s on %s: %v", x.name, h.name, err)
		}
		if err == nil {
			x.removed = true
			s.logf("rmpeer %s on %s (part %d)", x.name, h.name, h.comp)
		}
	}
	if len(ok) > 1 {
		s.stats["concurrent rmpeer"]++
		for _, h := range ok[1:] {
			if h.comp != ok[0].comp {
				s.stats["concurrent rmpeer across a partition"]++
				break
			}
		}
	}
	if len(ok) > 0 {
		s.stats["rmpeer"]++
	}
}

func (s *sim) join() {
	if len(s.up()) >= s.maxHost {
		return
	}
	h := s.newHost(s.hostName(), false, s.r.Intn(2))
	_ = h
	s.stats["joins"]++
}

// leave: a host's containers stop, it hands its blocks over and goes away.
func (s *sim) leave() {
	h := s.pick()
	if h == nil || len(s.up()) <= 2 {
		return
	}
	for k := range h.cont {
		if err := h.a.Release(k.ID, k.IfName); err != nil {
			s.fatalf("release: %v", err)
		}
	}
	h.cont = map[allocKey]netip.Addr{}
	n, err := h.a.Leave(s.aliveFor(h))
	s.logf("%s left, handing over %d blocks (%v)", h.name, n, err)
	h.final, h.a, h.state, h.pending = h.a, nil, stDead, nil
	s.stats["leaves"]++
}

// revive brings a removed name back as a fresh host (new state dir).
func (s *sim) revive() {
	for _, h := range s.hosts {
		if h.state == stDead && h.removed && s.byName[h.name] == h && s.r.Intn(2) == 0 {
			s.newHost(h.name, false, s.r.Intn(2))
			s.stats["revivals"]++
			return
		}
	}
}
