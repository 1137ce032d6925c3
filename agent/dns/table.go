// Package dns is flatmesh's cluster DNS: an immutable record table built
// from the names every host publishes (pure), a miekg/dns handler that
// answers the cluster's names and forwards the rest to the host's upstream
// resolvers, and the listeners on the container gateway addresses. The
// agent feeds it (agent/dns_*.go); nothing here knows about gossip.
package dns

import (
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
)

// TTL is the time to live of every answer about a cluster name, and the
// negative-caching time of the zone's SOA: a removed name is forgotten by
// caches within TTL seconds.
const TTL = 5

// Record is one name -> address pair. Name is relative to the cluster
// domain ("web", or "web.app"), in any case; NewTable validates it.
type Record struct {
	Name string
	Addr netip.Addr
}

// Table is an immutable snapshot of the cluster's names: safe for
// concurrent readers, replaced (never changed) when names change.
type Table struct {
	domain string                  // canonical FQDN of the zone: "flatmesh."
	byName map[string][]netip.Addr // canonical FQDN -> addresses, sorted
	byAddr map[netip.Addr][]string // address -> canonical FQDNs, sorted
	ents   map[string]bool         // empty non-terminals (parents of names)
	bare   map[string]string       // single-label "web." -> "web.flatmesh."
	space  []netip.Prefix          // reverse zones we are authoritative for
	soa    *mdns.SOA
}

// NewTable builds a table for domain (e.g. "flatmesh") from recs. Records
// with an invalid name or address are left out (ValidName says why). space
// is the cluster's address space: reverse lookups inside it are answered
// here (NXDOMAIN when unknown), others are forwarded.
func NewTable(domain string, space []netip.Prefix, recs []Record) *Table {
	zone := mdns.CanonicalName(domain)
	t := &Table{
		domain: zone,
		byName: map[string][]netip.Addr{},
		byAddr: map[netip.Addr][]string{},
		ents:   map[string]bool{},
		bare:   map[string]string{},
		space:  slices.Clone(space),
		soa: &mdns.SOA{
			Hdr:     mdns.RR_Header{Name: zone, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: TTL},
			Ns:      "ns." + zone,
			Mbox:    "hostmaster." + zone,
			Serial:  1,
			Refresh: 60, Retry: 10, Expire: 60, Minttl: TTL,
		},
	}
	for _, r := range recs {
		if ValidName(r.Name, domain) != nil || !r.Addr.IsValid() {
			continue
		}
		rel := strings.ToLower(r.Name)
		fq := rel + "." + zone
		a := r.Addr.Unmap()
		if !slices.Contains(t.byName[fq], a) {
			t.byName[fq] = append(t.byName[fq], a)
		}
		if !slices.Contains(t.byAddr[a], fq) {
			t.byAddr[a] = append(t.byAddr[a], fq)
		}
		if !strings.Contains(rel, ".") {
			t.bare[rel+"."] = fq
		}
		for p := fq; ; {
			i := strings.IndexByte(p, '.')
			p = p[i+1:]
			if len(p) <= len(zone) {
				break
			}
			t.ents[p] = true
		}
	}
	for _, v := range t.byName {
		slices.SortFunc(v, netip.Addr.Compare)
	}
	for _, v := range t.byAddr {
		slices.Sort(v)
	}
	return t
}

// Domain is the zone's canonical FQDN ("flatmesh.").
func (t *Table) Domain() string { return t.domain }

// Len is the number of distinct names.
func (t *Table) Len() int { return len(t.byName) }

// Addrs returns the addresses of a relative or fully qualified name.
func (t *Table) Addrs(name string) []netip.Addr {
	fq := mdns.CanonicalName(name)
	if !strings.HasSuffix(fq, "."+t.domain) {
		fq = strings.TrimSuffix(fq, ".") + "." + t.domain
	}
	return slices.Clone(t.byName[fq])
}

// Result is the outcome of a lookup in the table.
type Result struct {
	Ours   bool // the name is in the zone or a reverse zone we own; else forward it
	Rcode  int  // mdns.RcodeSuccess or mdns.RcodeNameError
	Answer []mdns.RR
	Ns     []mdns.RR // the SOA, for negative answers
}

// Lookup answers q from the table. A bare single-label name that is a
// cluster name ("web.") is answered too, so a resolver without the search
// domain still finds it; other bare names are not ours.
func (t *Table) Lookup(q mdns.Question) Result {
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		return Result{}
	}
	name := mdns.CanonicalName(q.Name)
	if name == t.domain || strings.HasSuffix(name, "."+t.domain) {
		return t.forward(q, name, name)
	}
	if fq, ok := t.bare[name]; ok {
		return t.forward(q, name, fq)
	}
	if a, ok := reverseAddr(name); ok && t.inSpace(a) {
		return t.reverse(q, name, a)
	}
	return Result{}
}

// forward answers a name of the zone; owner is the name as asked (lower
// case), fq the zone name it stands for.
func (t *Table) forward(q mdns.Question, owner, fq string) Result {
	res := Result{Ours: true}
	addrs, ok := t.byName[fq]
	switch {
	case fq == t.domain:
		if q.Qtype == mdns.TypeSOA || q.Qtype == mdns.TypeANY {
			res.Answer = append(res.Answer, mdns.Copy(t.soa))
		}
	case !ok && !t.ents[fq]:
		res.Rcode = mdns.RcodeNameError
	}
	for _, a := range addrs {
		hdr := mdns.RR_Header{Name: owner, Class: mdns.ClassINET, Ttl: TTL}
		switch {
		case a.Is4() && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY):
			hdr.Rrtype = mdns.TypeA
			res.Answer = append(res.Answer, &mdns.A{Hdr: hdr, A: a.AsSlice()})
		case a.Is6() && (q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY):
			hdr.Rrtype = mdns.TypeAAAA
			res.Answer = append(res.Answer, &mdns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	if len(res.Answer) == 0 {
		res.Ns = []mdns.RR{mdns.Copy(t.soa)}
	}
	return res
}

// reverse answers a PTR name of an address in the cluster's space.
func (t *Table) reverse(q mdns.Question, owner string, a netip.Addr) Result {
	res := Result{Ours: true}
	names, ok := t.byAddr[a]
	if !ok {
		res.Rcode = mdns.RcodeNameError
	}
	if q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY {
		for _, n := range names {
			res.Answer = append(res.Answer, &mdns.PTR{
				Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypePTR, Class: mdns.ClassINET, Ttl: TTL}, Ptr: n})
		}
	}
	if len(res.Answer) == 0 {
		res.Ns = []mdns.RR{mdns.Copy(t.soa)}
	}
	return res
}

func (t *Table) inSpace(a netip.Addr) bool {
	for _, p := range t.space {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
