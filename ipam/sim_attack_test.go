package ipam

import "math"

// The malicious member of the simulation: it holds the gossip key, is a
// live member of its part of the network, sees every view (omniscient),
// and sends forged IPAM messages of every kind: block entries with any
// owner, writer, origin and version (up to MaxUint64), hand-overs and
// reclaims attributed to other hosts (the owner as Prev: on by default,
// FLATMESH_SIM_ATTRIBUTE=0 turns it off), states whose sender field names
// another host; removals of live hosts with reclaims of their blocks; host
// records for others and floods of fake ones; requests in other hosts'
// names; refusals; push-pull states; garbage.
//
// Every message it sends reaches the allocator with From = "mal", broadcast,
// direct and push-pull alike: the gossip layer signs messages and verifies
// the sender against its pinned key (cluster/signing.go), so that is what a
// key holder can do since signing. It can claim anything INSIDE its own
// signed messages and relay forged entries; it can no longer be believed as
// another host (before signing, a push-pull state had no authenticated
// sender and the name inside was taken: 2 of 100 seeds x 1000 steps ended
// with a duplicate address that way).
//
// What it does not do, and why (docs/ipam.md, "Hostile members"): it never
// asks for a block in its own name (an owner can give the same block to two
// hosts: no design without consensus prevents that), its removals reach
// their targets while they see the victim alive (a removal of a host that
// is down or cut off is what rmpeer does, and any member may run rmpeer), it
// does not push a block to the version limit (the block is then held
// hostage: a denial of service, not a duplicate), and it does not announce
// another seed or address space (refused and reported: a denial of service
// too). Forged memberlist alive/dead messages are not modelled: the
// simulation's membership is the truth.

const malName = "mal"

var malIdent = ident{Name: malName, Inc: 1}

type attacker struct {
	comp int
	// attribute: also forge hand-overs and reclaims in other hosts' names
	// inside its own signed messages (the default; FLATMESH_SIM_ATTRIBUTE=0
	// turns it off).
	attribute bool
}

// attack sends a few forged messages (some steps).
func (s *sim) attack() {
	if s.mal == nil || s.r.Intn(2) == 0 {
		return
	}
	var targets []*simHost
	for _, h := range s.up() {
		if h.comp == s.mal.comp && h.a.v.seed != 0 {
			targets = append(targets, h)
		}
	}
	if len(targets) == 0 {
		return
	}
	for n := 1 + s.r.Intn(3); n > 0; n-- {
		base := targets[s.r.Intn(len(targets))]
		kind := s.r.Intn(8)
		s.stats["forged messages"]++
		switch kind {
		case 0, 1:
			s.malSend(targets, s.forgeEntries(base, false))
		case 2:
			// At once, while every target sees the victim alive: a removal
			// delivered after the victim went away is rmpeer of a host
			// that is down or cut off, which any member may run.
			p := s.forgeRemoval(base, targets)
			for _, h := range targets {
				h.a.HandleMessage(malName, p)
			}
		case 3:
			s.malSend(targets, s.forgeRecords(base))
		case 4:
			s.malSend(targets, s.forgeRequest(base))
		case 5:
			s.malSend(targets, encodeRefuse(base.a.v.seed, base.a.sp.fp, s.someName(), s.r.Intn(2) == 0,
				uint32(s.r.Intn(base.a.sp.nBlocks)), "forged"))
		case 6:
			t := targets[s.r.Intn(len(targets))]
			_ = t.a.MergeRemoteState(malName, s.forgeEntries(base, true)) // push-pull: errors are the point
		default:
			s.malSend(targets, s.garbage(base))
		}
	}
}

// malSend queues p from the attacker to one or more targets.
func (s *sim) malSend(targets []*simHost, p []byte) {
	for _, h := range targets {
		if s.r.Intn(2) == 0 {
			s.queue = append(s.queue, simMsg{malName, h.name, p, s.step + s.r.Intn(s.delay+1)})
		}
	}
}

// someIdent is a live or past identity of the run, the attacker, or nobody.
func (s *sim) someIdent() ident {
	switch x := s.r.Intn(10); {
	case x < 2:
		return malIdent
	case x < 3:
		return ident{}
	}
	h := s.hosts[s.r.Intn(len(s.hosts))]
	a := h.a
	if a == nil {
		a = h.final
	}
	if a == nil {
		return ident{Name: h.name, Inc: 1}
	}
	return a.self
}

func (s *sim) someName() string {
	if id := s.someIdent(); id.Name != "" {
		return id.Name
	}
	return malName
}

func (s *sim) forgedVersion(cur uint64) uint64 {
	switch s.r.Intn(8) {
	case 0, 1:
		return math.MaxUint64
	case 2:
		return maxVer + 1 + uint64(s.r.Intn(10))
	case 3:
		return cur + uint64(s.r.Intn(1000))
	}
	return cur + 1 + uint64(s.r.Intn(3))
}

// forgeEntries changes a few blocks of base's view in every way.
func (s *sim) forgeEntries(base *simHost, full bool) []byte {
	base.a.mu.Lock()
	v := base.a.v.clone()
	sp := base.a.sp
	base.a.mu.Unlock()
	var d delta
	for k := 1 + s.r.Intn(4); k > 0; k-- {
		b := uint32(s.r.Intn(sp.nBlocks))
		cur := v.blocks[b]
		// Written by the attacker, by nobody, or as a re-assertion; owned by
		// anyone. Hand-overs attributed to another host go in only when
		// s.mal.attribute is set (see the comment at the top).
		e := entry{Ver: s.forgedVersion(cur.Ver), Owner: s.someIdent(), Prev: malIdent}
		if !s.mal.attribute {
			// Claims for itself only: the block is the attacker's, written
			// by itself or by nobody, at any version.
			e.Owner = malIdent
			if s.r.Intn(2) == 0 {
				e.Prev = ident{}
			}
			v.blocks[b] = e
			d.blocks = append(d.blocks, b)
			continue
		}
		switch s.r.Intn(6) {
		case 0:
			if s.mal.attribute {
				e.Prev = cur.Owner // a hand-over "by" the owner
			}
		case 1:
			e.Prev = e.Owner // a re-assertion
		case 2:
			if s.mal.attribute {
				e.Origin, e.Prev = cur.Owner, ident{} // a reclaim
			}
		case 3:
			e.Prev = ident{}
		}
		v.blocks[b] = e
		if s.r.Intn(3) == 0 {
			v.unv[b] = false
		}
		d.blocks = append(d.blocks, b)
	}
	sender := malIdent
	if s.r.Intn(4) == 0 {
		sender = s.someIdent() // claims to be someone else
		if sender.Name == "" {
			sender = malIdent
		}
	}
	return encodeState(v, sp.fp, sender, s.r.Intn(2) == 0, full, d)
}

// forgeRemoval removes a live host (heirs: the attacker or anyone) and
// reclaims its blocks in the same message.
func (s *sim) forgeRemoval(base *simHost, targets []*simHost) []byte {
	victim := targets[s.r.Intn(len(targets))]
	base.a.mu.Lock()
	v := base.a.v.clone()
	sp := base.a.sp
	base.a.mu.Unlock()
	heirs := []ident{malIdent}
	if s.r.Intn(2) == 0 {
		heirs = []ident{s.someIdent(), malIdent}
	}
	var d delta
	id := victim.a.self
	v.setRemoval(id, heirs)
	d.removals = append(d.removals, id)
	for b, e := range v.blocks {
		if e.Owner == id && s.r.Intn(2) == 0 {
			v.blocks[b] = entry{Ver: e.Ver + 1, Owner: heirs[s.r.Intn(len(heirs))], Origin: id}
			d.blocks = append(d.blocks, uint32(b))
		}
	}
	return encodeState(v, sp.fp, malIdent, true, false, d)
}

// forgeRecords sends records of real hosts (forged heirs, versions) and a
// flood of fake identities.
func (s *sim) forgeRecords(base *simHost) []byte {
	base.a.mu.Lock()
	v := base.a.v.clone()
	sp := base.a.sp
	base.a.mu.Unlock()
	var d delta
	for k := 0; k < 30; k++ {
		id, fake := s.someIdent(), false
		if id.Name == "" || s.r.Intn(2) == 0 {
			id = ident{Name: "fake" + string(rune('a'+s.r.Intn(26))) + string(rune('a'+s.r.Intn(26))), Inc: uint32(s.r.Intn(5))}
			fake = true
		}
		v.hosts[id] = hostRec{Ver: s.forgedVersion(v.hosts[id].Ver) % maxVer, Used: true, Heirs: []ident{malIdent},
			Use: map[uint32]uint32{uint32(s.r.Intn(sp.nBlocks)): 1}}
		d.hosts = append(d.hosts, id)
		if fake && s.r.Intn(3) == 0 { // real hosts: see forgeRemoval
			v.setRemoval(id, []ident{malIdent})
			d.removals = append(d.removals, id)
		}
	}
	return encodeState(v, sp.fp, malIdent, true, false, d)
}

// forgeRequest asks, in another host's name, for a block or a specific one.
func (s *sim) forgeRequest(base *simHost) []byte {
	base.a.mu.Lock()
	defer base.a.mu.Unlock()
	victim := s.hosts[s.r.Intn(len(s.hosts))].name
	id := ident{Name: victim, Inc: 1}
	if h := s.byName[victim]; h != nil && h.a != nil {
		id = h.a.self
	}
	st := encodeState(base.a.v, base.a.sp.fp, id, false, false, delta{})
	b := uint32(s.r.Intn(base.a.sp.nBlocks))
	return encodeRequest(base.a.v.seed, base.a.sp.fp, s.r.Intn(2) == 0, b, st)
}

// garbage: random bytes, or a real message cut short or flipped.
func (s *sim) garbage(base *simHost) []byte {
	p := s.forgeEntries(base, false)
	switch s.r.Intn(3) {
	case 0:
		return p[:s.r.Intn(len(p))]
	case 1:
		q := append([]byte(nil), p...)
		q[s.r.Intn(len(q))] ^= byte(1 + s.r.Intn(255))
		if otherMap(q, base) {
			return p[:len(p)/2] // announcing another map is excluded (see the top)
		}
		return q
	}
	q := make([]byte, s.r.Intn(64))
	s.r.Read(q)
	return q
}

// otherMap reports whether a flipped message still decodes, naming another
// seed or address space than base's: that is announcing another map, one of
// the attacker's exclusions (the simulation found a flip that did exactly
// that, and hosts that had handed out nothing adopted it, as they must).
func otherMap(q []byte, base *simHost) bool {
	m, err := decodeMessage(q, base.a.sp.nBlocks)
	if err != nil {
		return false
	}
	seed, fp := base.a.v.seed, base.a.sp.fp
	switch x := m.(type) {
	case *wireState:
		return x.seed != seed || x.fp != fp
	case *wireRequest:
		return x.seed != seed || x.fp != fp || x.state != nil && (x.state.seed != seed || x.state.fp != fp)
	case *wireRefuse:
		return x.seed != seed || x.fp != fp
	}
	return false
}
