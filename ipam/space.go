package ipam

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"sort"
)

// Config is the cluster-wide shape of the address space. Every host of a
// cluster must use the same CIDR and BlockBits (gossip carries a fingerprint
// of both and ignores messages made for another shape).
type Config struct {
	// CIDR is the space handed out. IPv4, or IPv6 with at most 48 host bits.
	CIDR netip.Prefix
	// BlockBits is the prefix length of a block; 0 means DefaultBlockBits
	// for IPv4 and 112 for IPv6. A block holds 4 to 2^32 addresses
	// (IPv4 /30 is the smallest block) and the space at most MaxBlocks blocks.
	BlockBits int
	// Exclude lists addresses never handed out (routers, DHCP pools).
	// Parts outside CIDR are ignored.
	Exclude []netip.Prefix
	// GatewayPerBlock reserves the first usable address of every block as
	// its owner's gateway (overlay modes). Without it Allocation.Gateway is
	// the zero Addr and the agent supplies the LAN gateway (flat mode).
	GatewayPerBlock bool
}

// DefaultBlockBits is the block prefix length for IPv4 when Config.BlockBits is 0.
const DefaultBlockBits = 26

// defaultBlockBits6 is the block prefix length for IPv6 when Config.BlockBits is 0.
const defaultBlockBits6 = 112

// MaxBlocks bounds the number of blocks: the ownership map is dense (one
// entry per block), which is what makes every entry self-contained.
const MaxBlocks = 1 << 16

// span is an inclusive range of offsets from the start of the CIDR.
type span struct{ lo, hi uint64 }

// space is the geometry of a Config: offsets, blocks, exclusions, gateways.
// It is immutable after newSpace and safe for concurrent use.
type space struct {
	cidr      netip.Prefix
	is4       bool
	blockBits int
	hostBits  int    // address bits inside a block
	nBlocks   int    // number of blocks
	size      uint64 // addresses per block
	total     uint64 // addresses in the CIDR
	excl      []span // sorted, merged, clipped to the CIDR
	gateway   bool
	capacity  []uint32 // allocatable addresses per block
	gw        []uint64 // gateway offset per block (only when gateway)
	hasGW     []bool
	fp        uint64 // fingerprint of CIDR and BlockBits
}

func newSpace(c Config) (*space, error) {
	if !c.CIDR.IsValid() {
		return nil, errors.New("ipam: the CIDR is not set")
	}
	p := c.CIDR.Masked()
	if p != c.CIDR {
		return nil, fmt.Errorf("ipam: CIDR %s has host bits set (did you mean %s?)", c.CIDR, p)
	}
	if p.Addr().Is4In6() {
		return nil, fmt.Errorf("ipam: CIDR %s is an IPv4-mapped IPv6 prefix; write it as IPv4", p)
	}
	s := &space{cidr: p, is4: p.Addr().Is4(), gateway: c.GatewayPerBlock}
	addrBits := p.Addr().BitLen()
	bb := c.BlockBits
	if bb == 0 {
		bb = DefaultBlockBits
		if !s.is4 {
			bb = defaultBlockBits6
		}
	}
	if bb < p.Bits() {
		return nil, fmt.Errorf("ipam: block size /%d is larger than the CIDR %s", bb, p)
	}
	s.blockBits = bb
	s.hostBits = addrBits - bb
	if s.hostBits < 2 {
		return nil, fmt.Errorf("ipam: block size /%d is too small: a block needs at least 4 addresses (/%d)", bb, addrBits-2)
	}
	if s.hostBits > 32 {
		return nil, fmt.Errorf("ipam: block size /%d is too large: at most 2^32 addresses per block (/%d)", bb, addrBits-32)
	}
	if bb-p.Bits() > 16 {
		return nil, fmt.Errorf("ipam: CIDR %s with /%d blocks makes %d blocks; at most %d: use larger blocks or a smaller CIDR",
			p, bb, uint64(1)<<(bb-p.Bits()), MaxBlocks)
	}
	s.nBlocks = 1 << (bb - p.Bits())
	s.size = 1 << s.hostBits
	s.total = s.size * uint64(s.nBlocks)
	s.excl = s.exclusions(c.Exclude)
	s.computeBlocks()
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", p, bb)
	s.fp = h.Sum64()
	return s, nil
}

// exclusions turns the exclude list plus the CIDR's network (and IPv4
// broadcast) address into sorted, merged offset spans.
func (s *space) exclusions(ex []netip.Prefix) []span {
	out := []span{{0, 0}}
	if s.is4 {
		out = append(out, span{s.total - 1, s.total - 1})
	}
	if s.gateway {
		// Containers see their block's prefix (10.213.0.64/26), so each
		// block's own network address (and IPv4 broadcast) is unusable too;
		// the gateway is then the block's network address + 1, the address
		// the host puts on its bridge (overlay.Gateway).
		for b := uint64(0); b < uint64(s.nBlocks); b++ {
			out = append(out, span{b * s.size, b * s.size})
			if s.is4 {
				out = append(out, span{b*s.size + s.size - 1, b*s.size + s.size - 1})
			}
		}
	}
	for _, e := range ex {
		e = e.Masked()
		if !e.IsValid() || e.Addr().Is4() != s.is4 || !e.Overlaps(s.cidr) {
			continue
		}
		if e.Bits() <= s.cidr.Bits() {
			out = append(out, span{0, s.total - 1})
			continue
		}
		lo, _ := s.offsetOf(e.Addr())
		n := uint64(1) << (e.Addr().BitLen() - e.Bits())
		out = append(out, span{lo, lo + n - 1})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].lo < out[j].lo })
	merged := out[:1]
	for _, sp := range out[1:] {
		last := &merged[len(merged)-1]
		if sp.lo <= last.hi+1 {
			if sp.hi > last.hi {
				last.hi = sp.hi
			}
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

func (s *space) computeBlocks() {
	s.capacity = make([]uint32, s.nBlocks)
	s.gw = make([]uint64, s.nBlocks)
	s.hasGW = make([]bool, s.nBlocks)
	for b := 0; b < s.nBlocks; b++ {
		lo := uint64(b) * s.size
		hi := lo + s.size - 1
		free := s.size - s.excludedIn(lo, hi)
		if s.gateway && free > 0 {
			s.gw[b] = s.nextUsable(lo, hi, false, uint32(b))
			s.hasGW[b] = true
			free--
		}
		s.capacity[b] = uint32(free)
	}
}

// excludedIn counts excluded offsets in [lo, hi].
func (s *space) excludedIn(lo, hi uint64) uint64 {
	var n uint64
	i := sort.Search(len(s.excl), func(i int) bool { return s.excl[i].hi >= lo })
	for ; i < len(s.excl) && s.excl[i].lo <= hi; i++ {
		sp := s.excl[i]
		a, b := max(sp.lo, lo), min(sp.hi, hi)
		n += b - a + 1
	}
	return n
}

// excluded reports whether off is excluded and, if so, the last offset of
// the exclusion span holding it.
func (s *space) excluded(off uint64) (bool, uint64) {
	i := sort.Search(len(s.excl), func(i int) bool { return s.excl[i].hi >= off })
	if i < len(s.excl) && s.excl[i].lo <= off {
		return true, s.excl[i].hi
	}
	return false, 0
}

// nextUsable returns the first offset >= lo and <= hi that is not excluded
// (and, when skipGW, not block b's gateway); hi+1 when there is none.
func (s *space) nextUsable(lo, hi uint64, skipGW bool, b uint32) uint64 {
	for off := lo; off <= hi; {
		if ex, end := s.excluded(off); ex {
			if end >= hi {
				return hi + 1
			}
			off = end + 1
			continue
		}
		if skipGW && s.hasGW[b] && s.gw[b] == off {
			off++
			continue
		}
		return off
	}
	return hi + 1
}

// usable reports whether off may ever be handed out to a container.
func (s *space) usable(off uint64) bool {
	if off >= s.total {
		return false
	}
	if ex, _ := s.excluded(off); ex {
		return false
	}
	b := s.blockOf(off)
	return !(s.hasGW[b] && s.gw[b] == off)
}

func (s *space) blockOf(off uint64) uint32 { return uint32(off >> s.hostBits) }

func (s *space) blockStart(b uint32) uint64 { return uint64(b) << s.hostBits }

// blockPrefix is block b as a prefix.
func (s *space) blockPrefix(b uint32) netip.Prefix {
	return netip.PrefixFrom(s.addrAt(s.blockStart(b)), s.blockBits)
}

// blockIndex returns the block a prefix names (it must be exactly a block).
func (s *space) blockIndex(p netip.Prefix) (uint32, bool) {
	if p.Bits() != s.blockBits {
		return 0, false
	}
	off, ok := s.offsetOf(p.Addr())
	if !ok || off%s.size != 0 {
		return 0, false
	}
	return s.blockOf(off), true
}

// addrAt converts an offset into an address. off must be < s.total.
func (s *space) addrAt(off uint64) netip.Addr {
	if s.is4 {
		b := s.cidr.Addr().As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		v += uint32(off)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	b := s.cidr.Addr().As16()
	for i := 15; i >= 8; i-- {
		b[i] |= byte(off)
		off >>= 8
	}
	return netip.AddrFrom16(b)
}

// offsetOf converts an address of the CIDR into its offset.
func (s *space) offsetOf(a netip.Addr) (uint64, bool) {
	a = a.Unmap()
	if !a.IsValid() || a.Is4() != s.is4 || !s.cidr.Contains(a) {
		return 0, false
	}
	if s.is4 {
		x, y := a.As4(), s.cidr.Addr().As4()
		av := uint32(x[0])<<24 | uint32(x[1])<<16 | uint32(x[2])<<8 | uint32(x[3])
		bv := uint32(y[0])<<24 | uint32(y[1])<<16 | uint32(y[2])<<8 | uint32(y[3])
		return uint64(av - bv), true
	}
	x, y := a.As16(), s.cidr.Addr().As16()
	var off uint64
	for i := 8; i < 16; i++ {
		off = off<<8 | uint64(x[i]^y[i])
	}
	return off, true
}
