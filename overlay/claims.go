package overlay

import (
	"fmt"
	"net/netip"
)

// Claims records what the peers planned so far hold (blocks, underlay
// addresses), so that a data plane's Desired skips a peer or block that
// clashes with ours or an earlier peer's, with the reason for its log.
// Not safe for concurrent use (one Desired call owns it).
type Claims struct {
	self      netip.Addr // our underlay address
	blocks    takenSet
	underlays map[netip.Addr]string
}

// NewClaims starts with our own underlay address and blocks.
func NewClaims(selfName string, selfUnderlay netip.Addr, own []netip.Prefix) *Claims {
	c := &Claims{self: selfUnderlay.Unmap(), underlays: map[netip.Addr]string{selfUnderlay.Unmap(): selfName}}
	for _, b := range own {
		c.blocks.add(b.Masked(), "our own block")
	}
	return c
}

// UnderlayProblem says why a peer's underlay address cannot be used (not a
// unicast address, another family than ours, already a member's), or "".
func (c *Claims) UnderlayProblem(under netip.Addr) string {
	under = under.Unmap()
	switch {
	case !under.IsValid() || under.IsUnspecified() || under.IsMulticast():
		return fmt.Sprintf("no usable underlay address (%s)", under)
	case under.Is4() != c.self.Is4():
		return fmt.Sprintf("underlay %s is of another family than ours (%s)", under, c.self)
	case c.underlays[under] != "":
		return fmt.Sprintf("underlay %s already used by %s", under, c.underlays[under])
	}
	return ""
}

// ClaimUnderlay records a peer's underlay address.
func (c *Claims) ClaimUnderlay(under netip.Addr, owner string) { c.underlays[under.Unmap()] = owner }

// ClaimBlock records blk for owner unless it overlaps a block already
// claimed; then it returns that block and its owner, and records nothing.
func (c *Claims) ClaimBlock(blk netip.Prefix, owner string) (overlaps string) {
	blk = blk.Masked()
	if t, o, ok := c.blocks.overlapping(blk); ok {
		return fmt.Sprintf("%s (%s)", t, o)
	}
	c.blocks.add(blk, owner)
	return ""
}
