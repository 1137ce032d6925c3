package doctor

import (
	"errors"
	"net/netip"
	"time"
)

// measureSkew sends an ICMP timestamp request to addr (answered by the
// peer's kernel, no agent involved) and returns their clock minus ours.
// Needs a raw socket (root).
func measureSkew(addr netip.Addr, id uint16, timeout time.Duration) (time.Duration, error) {
	if !addr.Is4() {
		return 0, errors.New("ICMP timestamps exist for IPv4 only")
	}
	sent := time.Now()
	var r timestampReply
	got, err := icmpExchange(netip.IPv4Unspecified(), addr, timestampRequest(id, 1, sent), timeout, func(b []byte) bool {
		var perr error
		r, perr = parseTimestampReply(b)
		return perr == nil && r.id == id
	})
	switch {
	case errors.Is(err, errNoICMPReply):
		return 0, errors.New("no ICMP timestamp reply")
	case err != nil:
		return 0, err
	}
	return skew(r.originate, r.receive, r.transmit, msOfDay(got)), nil
}
