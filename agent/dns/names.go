package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxNameLen bounds a relative name (the zone's name and dot come on top;
// a whole name has at most 253 characters).
const MaxNameLen = 200

// ValidName checks a relative name for the zone domain: dot-separated
// labels of 1..63 letters, digits, '-' and '_' (Docker allows '_' and '.'
// in container names), not starting or ending with '-', at most 253
// characters with the domain. Case does not matter (DNS compares without it).
func ValidName(name, domain string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > MaxNameLen || len(name)+1+len(strings.TrimSuffix(domain, ".")) > 253 {
		return fmt.Errorf("name %q is too long", name)
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("name %q: a label must have 1 to 63 characters", name)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("name %q: a label may not start or end with '-'", name)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("name %q: character %q is not allowed in a DNS name", name, c)
			}
		}
	}
	return nil
}

// reverseAddr parses a full reverse name ("4.3.2.1.in-addr.arpa." or the
// 32 nibbles of ip6.arpa.) in canonical (lower) case into its address.
func reverseAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		parts := strings.Split(rest, ".")
		if len(parts) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, p := range parts {
			if p == "" || len(p) > 3 || (len(p) > 1 && p[0] == '0') {
				return netip.Addr{}, false
			}
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n > 255 {
				return netip.Addr{}, false
			}
			b[3-i] = byte(n)
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		if len(rest) != 63 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i := 0; i < 32; i++ {
			c := rest[2*i]
			if i < 31 && rest[2*i+1] != '.' {
				return netip.Addr{}, false
			}
			v := strings.IndexByte("0123456789abcdef", c)
			if v < 0 {
				return netip.Addr{}, false
			}
			pos := 31 - i // nibble index from the most significant
			if pos%2 == 0 {
				b[pos/2] |= byte(v) << 4
			} else {
				b[pos/2] |= byte(v)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
