package doctor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ParseForward reads `iptables -S FORWARD`: the policy and whether a rule
// jumps to chain.
func ParseForward(out, chain string) (policy string, jump bool, err error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "-P" && f[1] == "FORWARD" {
			policy = f[2]
		}
		if len(f) >= 2 && f[0] == "-A" && f[1] == "FORWARD" {
			for i := 2; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g") && f[i+1] == chain {
					jump = true
				}
			}
		}
	}
	if policy == "" {
		return "", false, errors.New("no FORWARD policy in iptables -S output")
	}
	return policy, jump, nil
}

// ParseNmcli reads `nmcli -t -f DEVICE,STATE device status` and says
// whether NetworkManager manages iface ("unmanaged" is the only state in
// which it keeps its hands off).
func ParseNmcli(out, iface string) (managed, found bool, state string) {
	for _, line := range strings.Split(out, "\n") {
		dev, st, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || dev != iface {
			continue
		}
		return st != "unmanaged", true, st
	}
	return false, false, ""
}

// ParseNetworkdLink reads /run/systemd/netif/links/IFINDEX: networkd
// manages the link unless its ADMIN_STATE is unmanaged (or it has none).
func ParseNetworkdLink(content string) (managed bool, state string) {
	for _, line := range strings.Split(content, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ADMIN_STATE="); ok {
			return v != "unmanaged" && v != "", v
		}
	}
	return false, ""
}

// ICMP timestamp (RFC 792 type 13/14): times are milliseconds since
// midnight UTC.
const (
	icmpTimestamp      = 13
	icmpTimestampReply = 14
	day                = 24 * time.Hour
)

// msOfDay is t as milliseconds since midnight UTC.
func msOfDay(t time.Time) uint32 {
	t = t.UTC()
	return uint32(t.Sub(t.Truncate(day)) / time.Millisecond)
}

// timestampRequest builds an ICMP timestamp request (checksum filled).
func timestampRequest(id, seq uint16, now time.Time) []byte {
	b := make([]byte, 20)
	b[0] = icmpTimestamp
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	binary.BigEndian.PutUint32(b[8:], msOfDay(now))
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// timestampReply is a parsed type 14 message.
type timestampReply struct {
	id, seq                      uint16
	originate, receive, transmit uint32
}

func parseTimestampReply(b []byte) (timestampReply, error) {
	if len(b) < 20 {
		return timestampReply{}, fmt.Errorf("short ICMP message (%d bytes)", len(b))
	}
	if b[0] != icmpTimestampReply || b[1] != 0 {
		return timestampReply{}, fmt.Errorf("not a timestamp reply (type %d code %d)", b[0], b[1])
	}
	r := timestampReply{
		id: binary.BigEndian.Uint16(b[4:]), seq: binary.BigEndian.Uint16(b[6:]),
		originate: binary.BigEndian.Uint32(b[8:]), receive: binary.BigEndian.Uint32(b[12:]),
		transmit: binary.BigEndian.Uint32(b[16:]),
	}
	if r.receive&0x80000000 != 0 || r.transmit&0x80000000 != 0 {
		return r, errors.New("the peer's clock is not in standard time (high bit set)")
	}
	return r, nil
}

// skew is the peer's clock minus ours (NTP's offset formula), from our send
// time t0, their receive t1 and transmit t2, and our receive t3, all in ms
// of day; differences wrap around midnight.
func skew(t0, t1, t2, t3 uint32) time.Duration {
	d := func(a, b uint32) int64 { // a - b in (-12h, 12h]
		x := (int64(a) - int64(b)) % int64(day/time.Millisecond)
		if x > int64(day/time.Millisecond)/2 {
			x -= int64(day / time.Millisecond)
		} else if x <= -int64(day/time.Millisecond)/2 {
			x += int64(day / time.Millisecond)
		}
		return x
	}
	return time.Duration((d(t1, t0)+d(t2, t3))/2) * time.Millisecond
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
