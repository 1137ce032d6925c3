package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/hashicorp/memberlist"
)

// MetaVersion is the format version written as the first byte of encoded
// node metadata.
//
// Compatibility policy: within version 1, new fields may only be appended
// after the known ones; a version-1 decoder ignores trailing bytes and flag
// bits it does not know, so older agents keep accepting newer ones. A change
// that older agents cannot read bumps the version, and DecodeMeta rejects a
// version it does not know with ErrMetaVersion (the peer is then refused).
const MetaVersion = 1

// Limits of the variable-length Meta fields. Together they keep the encoding
// far below memberlist.MetaMaxSize (512 bytes); see maxMetaLen.
const (
	MaxModeLen    = 32
	MaxClusterLen = 64
	MaxMACLen     = 20 // InfiniBand hardware addresses are 20 bytes
)

// ErrMetaVersion is wrapped by DecodeMeta when the first byte names a format
// version this agent does not know.
var ErrMetaVersion = errors.New("unknown node metadata version")

// flag bits of byte 1.
const (
	flagIPAMUsed = 1 << 0
	flagLeaving  = 1 << 1
	flagWGKey    = 1 << 2
	flagDirect   = 1 << 3
	flagSignKey  = 1 << 4
)

// maxMetaLen is the largest encoding Encode can produce:
// version, flags, 3 length-prefixed fields, fingerprint, MAC, WG key+port,
// seed, digest, signing key.
const maxMetaLen = 1 + 1 + (1 + MaxModeLen) + (1 + MaxClusterLen) + (1 + 16) + 8 +
	(1 + MaxMACLen) + 32 + 2 + 8 + 8 + 32

var _ [memberlist.MetaMaxSize - maxMetaLen]byte // compile-time: maxMetaLen <= MetaMaxSize

// Meta is the node metadata every member gossips about itself. It is small
// (memberlist caps it at 512 bytes): IPAM state does not belong here.
// Meta values are copied by value; treat VTEPMAC as immutable once shared.
type Meta struct {
	Mode        string           // "vxlan" | "wireguard" | "flat"
	Cluster     string           // cluster name; peers with another name are refused
	Underlay    netip.Addr       // the host's underlay address (no zone)
	Fingerprint uint64           // hash of cluster-wide settings (the agent computes it)
	VTEPMAC     net.HardwareAddr // vxlan mode; may be nil
	WGPublicKey [32]byte         // wireguard mode; zero otherwise
	WGPort      uint16           // wireguard mode; zero otherwise
	IPAMSeed    uint64           // identity of the IPAM map this node belongs to (0 = none yet)
	IPAMUsed    bool             // this node has handed out at least one address
	// Leaving is set by Cluster.Leave just before the node leaves, so that
	// peers record it as "left" rather than "failed" (memberlist does not tell
	// its delegates which of the two happened).
	Leaving bool
	// IPAMDigest is a hash of this node's view of block ownership, so that
	// `flatmesh ipam check` can tell whether every member's view agrees.
	// Appended after IPAMSeed (optional on decode: older encodings lack it).
	IPAMDigest uint64
	// DirectRouting says this host routes cluster traffic unencapsulated to
	// peers on its subnets and accepts it from them (a flag bit: older
	// agents leave it clear, so nobody routes to them directly).
	DirectRouting bool
	// SignKey is the public half of the agent's signing key (identity.key):
	// members pin it on first sight and verify every application message of
	// this node with it. Set by New (whatever Config.Meta says); appended
	// after IPAMDigest with flag bit 16 (older agents ignore it, but they
	// cannot read signed messages anyway).
	SignKey PublicKey
}

// validate checks the limits Encode relies on.
func (m Meta) validate() error {
	switch {
	case len(m.Mode) > MaxModeLen:
		return fmt.Errorf("mode %q is longer than %d bytes", m.Mode, MaxModeLen)
	case len(m.Cluster) > MaxClusterLen:
		return fmt.Errorf("cluster name %q is longer than %d bytes", m.Cluster, MaxClusterLen)
	case m.Underlay.Zone() != "":
		return fmt.Errorf("underlay address %s has a zone", m.Underlay)
	case len(m.VTEPMAC) > MaxMACLen:
		return fmt.Errorf("VTEP MAC %s is longer than %d bytes", m.VTEPMAC, MaxMACLen)
	}
	return nil
}

// Encode returns the versioned binary form of m (at most 512 bytes, the
// memberlist limit). It fails only when a field exceeds its limit.
//
// Layout of version 1 (big endian):
//
//	u8 version=1 | u8 flags (1 IPAMUsed, 2 Leaving, 4 WG key present)
//	u8 len | Mode | u8 len | Cluster | u8 len (0, 4 or 16) | Underlay
//	u64 Fingerprint | u8 len | VTEPMAC | [32]byte WGPublicKey if flag 4
//	u16 WGPort | u64 IPAMSeed | u64 IPAMDigest (optional: absent in older encodings)
//	[32]byte SignKey if flag 16
func (m Meta) Encode() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("encoding node metadata: %w", err)
	}
	b := make([]byte, 0, maxMetaLen)
	var flags byte
	if m.IPAMUsed {
		flags |= flagIPAMUsed
	}
	if m.Leaving {
		flags |= flagLeaving
	}
	if m.WGPublicKey != ([32]byte{}) {
		flags |= flagWGKey
	}
	if m.DirectRouting {
		flags |= flagDirect
	}
	if m.SignKey != (PublicKey{}) {
		flags |= flagSignKey
	}
	b = append(b, MetaVersion, flags)
	b = appendField(b, []byte(m.Mode))
	b = appendField(b, []byte(m.Cluster))
	var ip []byte
	if m.Underlay.IsValid() {
		ip = m.Underlay.AsSlice()
	}
	b = appendField(b, ip)
	b = binary.BigEndian.AppendUint64(b, m.Fingerprint)
	b = appendField(b, m.VTEPMAC)
	if flags&flagWGKey != 0 {
		b = append(b, m.WGPublicKey[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, m.WGPort)
	b = binary.BigEndian.AppendUint64(b, m.IPAMSeed)
	b = binary.BigEndian.AppendUint64(b, m.IPAMDigest)
	if flags&flagSignKey != 0 {
		b = append(b, m.SignKey[:]...)
	}
	return b, nil
}

func appendField(b, f []byte) []byte {
	return append(append(b, byte(len(f))), f...)
}

// metaReader reads fields from an encoded Meta; the first error sticks.
type metaReader struct {
	b   []byte
	err error
}

func (r *metaReader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = fmt.Errorf("truncated at %s: need %d bytes, have %d", what, n, len(r.b))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *metaReader) field(what string, maxLen int) []byte {
	l := r.take(1, what+" length")
	if r.err != nil {
		return nil
	}
	if int(l[0]) > maxLen {
		r.err = fmt.Errorf("%s is %d bytes, the limit is %d", what, l[0], maxLen)
		return nil
	}
	return r.take(int(l[0]), what)
}

// DecodeMeta parses the output of Meta.Encode. It never panics, whatever
// the input (it is fuzzed): bytes from the network that do not parse give an
// error, an unknown version an error wrapping ErrMetaVersion.
func DecodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, errors.New("decoding node metadata: empty")
	}
	if b[0] != MetaVersion {
		return Meta{}, fmt.Errorf("decoding node metadata: %w %d (this agent reads version %d; upgrade it)",
			ErrMetaVersion, b[0], MetaVersion)
	}
	m, err := decodeV1(&metaReader{b: b[1:]})
	if err != nil {
		return Meta{}, fmt.Errorf("decoding node metadata: %w", err)
	}
	return m, nil
}

func decodeV1(r *metaReader) (Meta, error) {
	var m Meta
	fl := r.take(1, "flags")
	mode := r.field("mode", MaxModeLen)
	name := r.field("cluster name", MaxClusterLen)
	ip := r.field("underlay address", 16)
	fp := r.take(8, "fingerprint")
	mac := r.field("VTEP MAC", MaxMACLen)
	if r.err != nil {
		return Meta{}, r.err
	}
	flags := fl[0]
	var wg []byte
	if flags&flagWGKey != 0 {
		wg = r.take(32, "WireGuard key")
	}
	port := r.take(2, "WireGuard port")
	seed := r.take(8, "IPAM seed")
	if r.err != nil {
		return Meta{}, r.err
	}
	if len(r.b) > 0 { // absent in encodings made before the digest existed
		if d := r.take(8, "IPAM digest"); r.err == nil {
			m.IPAMDigest = binary.BigEndian.Uint64(d)
		} else {
			return Meta{}, r.err
		}
	}
	if flags&flagSignKey != 0 {
		k := r.take(32, "signing key")
		if r.err != nil {
			return Meta{}, r.err
		}
		copy(m.SignKey[:], k)
	}
	// Trailing bytes are fields appended by a newer version-1 agent: ignored.
	switch len(ip) {
	case 0:
	case 4, 16:
		m.Underlay, _ = netip.AddrFromSlice(ip)
	default:
		return Meta{}, fmt.Errorf("underlay address has %d bytes, want 0, 4 or 16", len(ip))
	}
	m.Mode, m.Cluster = string(mode), string(name)
	m.Fingerprint = binary.BigEndian.Uint64(fp)
	if len(mac) > 0 {
		m.VTEPMAC = append(net.HardwareAddr(nil), mac...)
	}
	copy(m.WGPublicKey[:], wg)
	m.WGPort = binary.BigEndian.Uint16(port)
	m.IPAMSeed = binary.BigEndian.Uint64(seed)
	m.IPAMUsed = flags&flagIPAMUsed != 0
	m.Leaving = flags&flagLeaving != 0
	m.DirectRouting = flags&flagDirect != 0
	return m, nil
}

// clone returns a copy of m that shares no memory with it.
func (m Meta) clone() Meta {
	if m.VTEPMAC != nil {
		m.VTEPMAC = append(net.HardwareAddr(nil), m.VTEPMAC...)
	}
	return m
}
