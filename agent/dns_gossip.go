package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	fmdns "github.com/flatmesh/flatmesh/agent/dns"
)

// Names ride the cluster's application channel beside the IPAM messages
// (which start with 0xFB): each host publishes its own (name, address)
// list as one versioned record. Wire format:
//
//	record:    0xFD, version 1, type 1, host(str) recordVersion(u64 BE)
//	           boot(u64 BE: when the host's agent started)
//	           n(uvarint) (name(str) addrLen(1: 4 or 16) addr)*
//	push-pull: 0xFD, version 1, type 2, len(uvarint) IPAM state, record
//	           (our push-pull state is the IPAM state and our own record)
//
// Strings are a uvarint length and bytes. A record is accepted only from
// its host (the broadcast's origin, the direct message's sender, or for
// push-pull a member other than us), with a newer version not far in the
// future, within the size caps, with valid names and addresses in the
// cluster's space. Which names answer is decided when the table is built:
// only addresses inside blocks the record's host owns, so a dead host's
// names stay while its blocks stay, and go when rmpeer hands them on.
const (
	namesMagic       = 0xFD
	namesWireVersion = 1
	namesMsgRecord   = 1
	namesMsgPushPull = 2

	// maxNamesPerHost and maxNamesRecord cap one host's record.
	maxNamesPerHost = 4096
	maxNamesRecord  = 512 << 10
	// maxVersionAhead bounds how far in the future (as nanoseconds of the
	// wall clock) a record's version may lie: a peer cannot pin its record
	// at a version its restarted agent could never exceed.
	maxVersionAhead = 24 * time.Hour
)

// hostNames is one host's published record.
type hostNames struct {
	Host    string
	Version uint64
	Boot    uint64         // the agent's start (ns): a new value means it restarted
	Entries []fmdns.Record // sorted by name, then address
}

func isNamesMessage(b []byte) bool { return len(b) > 0 && b[0] == namesMagic }

func appendStr(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func encodeHostNames(r hostNames) []byte {
	b := []byte{namesMagic, namesWireVersion, namesMsgRecord}
	b = appendStr(b, r.Host)
	b = binary.BigEndian.AppendUint64(b, r.Version)
	b = binary.BigEndian.AppendUint64(b, r.Boot)
	b = binary.AppendUvarint(b, uint64(len(r.Entries)))
	for _, e := range r.Entries {
		b = appendStr(b, e.Name)
		raw := e.Addr.AsSlice()
		b = append(append(b, byte(len(raw))), raw...)
	}
	return b
}

var errNamesShort = errors.New("truncated names message")

type namesReader struct {
	b   []byte
	err error
}

func (r *namesReader) take(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.err = errNamesShort
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *namesReader) uvarint(max uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > max {
		r.err = fmt.Errorf("bad number in names message")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *namesReader) str(max int) string { return string(r.take(int(r.uvarint(uint64(max))))) }

// decodeHostNames reads a record message; it never panics and checks the
// caps (fuzzed).
func decodeHostNames(b []byte) (hostNames, error) {
	if len(b) > maxNamesRecord {
		return hostNames{}, fmt.Errorf("names record of %d bytes is over the cap of %d", len(b), maxNamesRecord)
	}
	r := &namesReader{b: b}
	hdr := r.take(3)
	if r.err == nil && (hdr[0] != namesMagic || hdr[1] != namesWireVersion || hdr[2] != namesMsgRecord) {
		return hostNames{}, fmt.Errorf("not a names record (header % x)", hdr)
	}
	var out hostNames
	out.Host = r.str(255)
	if v := r.take(8); v != nil {
		out.Version = binary.BigEndian.Uint64(v)
	}
	if v := r.take(8); v != nil {
		out.Boot = binary.BigEndian.Uint64(v)
	}
	n := r.uvarint(maxNamesPerHost)
	for i := uint64(0); i < n && r.err == nil; i++ {
		name := r.str(fmdns.MaxNameLen)
		raw := r.take(int(r.uvarint(16)))
		a, ok := netip.AddrFromSlice(raw)
		if r.err == nil && (!ok || (len(raw) != 4 && len(raw) != 16)) {
			r.err = errors.New("bad address in names record")
		}
		out.Entries = append(out.Entries, fmdns.Record{Name: name, Addr: a})
	}
	if r.err != nil {
		return hostNames{}, r.err
	}
	if len(r.b) != 0 {
		return hostNames{}, errors.New("trailing bytes after the names record")
	}
	if out.Host == "" {
		return hostNames{}, errors.New("names record without a host")
	}
	return out, nil
}

// joinPushPull wraps the IPAM push-pull state and our record; without a
// record (DNS off) the IPAM state goes alone, as before.
func joinPushPull(ipamState, record []byte) []byte {
	if record == nil {
		return ipamState
	}
	b := []byte{namesMagic, namesWireVersion, namesMsgPushPull}
	b = binary.AppendUvarint(b, uint64(len(ipamState)))
	b = append(b, ipamState...)
	return append(b, record...)
}

// splitPushPull undoes joinPushPull; a plain IPAM state comes back whole.
func splitPushPull(buf []byte) (ipamState, record []byte, err error) {
	if len(buf) < 3 || buf[0] != namesMagic {
		return buf, nil, nil
	}
	if buf[1] != namesWireVersion || buf[2] != namesMsgPushPull {
		return nil, nil, fmt.Errorf("unknown push-pull envelope % x", buf[:3])
	}
	r := &namesReader{b: buf[3:]}
	ipamState = r.take(int(r.uvarint(uint64(len(buf)))))
	if r.err != nil {
		return nil, nil, r.err
	}
	return ipamState, r.b, nil
}

// nameBook keeps every host's record and builds the record table. Safe for
// concurrent use (memberlist callbacks, the reconcile pass, the API).
type nameBook struct {
	self   string
	domain string
	space  []netip.Prefix
	now    func() time.Time

	// isMember, if set, asks the cluster's live member table (a record can
	// arrive right after its host joined, before the next pass's setView).
	isMember func(string) bool

	mu      sync.Mutex
	own     hostNames
	hosts   map[string]hostNames // other hosts' records
	members map[string]bool      // every member we know, any state
	owners  map[string][]netip.Prefix
}

func newNameBook(self, domain string, space []netip.Prefix, now func() time.Time) *nameBook {
	if now == nil {
		now = time.Now
	}
	return &nameBook{self: self, domain: domain, space: space, now: now,
		own:   hostNames{Host: self, Version: uint64(now().UnixNano()), Boot: uint64(now().UnixNano())},
		hosts: map[string]hostNames{}, members: map[string]bool{}, owners: map[string][]netip.Prefix{}}
}

// setOwn replaces our entries; it returns the encoded record and true when
// they changed (the version moves forward).
func (b *nameBook) setOwn(entries []fmdns.Record) ([]byte, bool) {
	sortRecords(entries)
	b.mu.Lock()
	defer b.mu.Unlock()
	if slices.Equal(entries, b.own.Entries) {
		return nil, false
	}
	b.own.Entries = entries
	b.own.Version = max(b.own.Version+1, uint64(b.now().UnixNano()))
	return encodeHostNames(b.own), true
}

// ownRecord is our encoded record (push-pull, greetings, refreshes).
func (b *nameBook) ownRecord() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return encodeHostNames(b.own)
}

func sortRecords(rs []fmdns.Record) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Name != rs[j].Name {
			return rs[i].Name < rs[j].Name
		}
		return rs[i].Addr.Less(rs[j].Addr)
	})
}

// accepted says what accept did.
type accepted struct {
	changed bool   // the book changed: rebuild the table
	restart string // this host is new to us or restarted: send it our record
}

// accept takes a record that arrived from sender ("" for push-pull, where
// memberlist does not say who sent it). An error says why a record was
// refused.
func (b *nameBook) accept(sender string, payload []byte) (accepted, error) {
	rec, err := decodeHostNames(payload)
	if err != nil {
		return accepted{}, err
	}
	if sender != "" && rec.Host != sender {
		return accepted{}, fmt.Errorf("record of %q sent by %q: a host publishes only its own names", rec.Host, sender)
	}
	if rec.Host == b.self {
		return accepted{}, nil // our own, relayed back
	}
	if limit := uint64(b.now().Add(maxVersionAhead).UnixNano()); rec.Version > limit {
		return accepted{}, fmt.Errorf("record of %q has version %d, too far in the future", rec.Host, rec.Version)
	}
	for _, e := range rec.Entries {
		if err := fmdns.ValidName(e.Name, b.domain); err != nil {
			return accepted{}, fmt.Errorf("record of %q: %w", rec.Host, err)
		}
		if !inPrefixes(b.space, e.Addr) {
			return accepted{}, fmt.Errorf("record of %q: address %s is outside the cluster's space", rec.Host, e.Addr)
		}
	}
	live := b.isMember != nil && b.isMember(rec.Host)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !live && !b.members[rec.Host] {
		return accepted{}, fmt.Errorf("record of %q: not a member", rec.Host)
	}
	cur, ok := b.hosts[rec.Host]
	var res accepted
	if !ok || cur.Boot != rec.Boot {
		res.restart = rec.Host
	}
	if ok && cur.Version >= rec.Version {
		return res, nil
	}
	sortRecords(rec.Entries)
	b.hosts[rec.Host] = rec
	res.changed = true
	return res, nil
}

// setView records the members (any state) and block owners of a pass, and
// forgets the records of hosts that are neither members nor owners.
func (b *nameBook) setView(members []string, owners map[string][]netip.Prefix) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.members = map[string]bool{}
	for _, m := range members {
		b.members[m] = true
	}
	b.owners = owners
	for h := range b.hosts {
		if !b.members[h] && len(owners[h]) == 0 {
			delete(b.hosts, h)
		}
	}
}

// records lists the names that answer: each host's entries whose address
// lies in a block that host owns.
func (b *nameBook) records() []fmdns.Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []fmdns.Record
	add := func(r hostNames) {
		for _, e := range r.Entries {
			if inPrefixes(b.owners[r.Host], e.Addr) {
				out = append(out, e)
			}
		}
	}
	add(b.own)
	for _, r := range b.hosts {
		add(r)
	}
	return out
}

// stats counts hosts with a record and their entries.
func (b *nameBook) stats() (hosts, entries int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.hosts {
		entries += len(r.Entries)
	}
	return len(b.hosts) + 1, entries + len(b.own.Entries)
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// normalName is a container name as published: lower case, or "" when it
// is not a valid DNS name (such a container has no name in DNS).
func normalName(name, domain string) string {
	if fmdns.ValidName(name, domain) != nil {
		return ""
	}
	return strings.ToLower(name)
}
