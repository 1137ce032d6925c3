package doctor

import (
	"encoding/binary"
	"fmt"
)

const (
	icmpEchoReply   = 0
	icmpEchoRequest = 8
)

// echoRequest builds an ICMP echo request (checksum filled).
func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 16)
	b[0] = icmpEchoRequest
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "flatmesh")
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// parseEchoReply returns the id and sequence of an ICMP echo reply.
func parseEchoReply(b []byte) (id, seq uint16, err error) {
	if len(b) < 8 {
		return 0, 0, fmt.Errorf("short ICMP message (%d bytes)", len(b))
	}
	if b[0] != icmpEchoReply || b[1] != 0 {
		return 0, 0, fmt.Errorf("not an echo reply (type %d code %d)", b[0], b[1])
	}
	return binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), nil
}
