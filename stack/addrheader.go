package stack

import (
	"fmt"
	"net/netip"
)

// The address header of an exported, unconnected UDP socket (see
// Socket.File): every message, both ways, starts with one byte holding the
// address length (4 or 16), the port (2 bytes, big endian), then the
// address; the payload follows. This file is the one encoder and decoder
// of that format.

// MaxAddrHeaderLen is the length of the address header of an IPv6
// address, the longest.
const MaxAddrHeaderLen = 3 + 16

// AppendAddrHeader appends ap's address header to dst. An IPv4-mapped
// IPv6 address is written as IPv4.
func AppendAddrHeader(dst []byte, ap netip.AddrPort) []byte {
	raw := ap.Addr().Unmap().AsSlice()
	dst = append(dst, byte(len(raw)), byte(ap.Port()>>8), byte(ap.Port()))
	return append(dst, raw...)
}

// ParseAddrHeader splits a message of an exported UDP socket into the
// address of its header and the payload after it.
func ParseAddrHeader(msg []byte) (netip.AddrPort, []byte, error) {
	if len(msg) < 3 {
		return netip.AddrPort{}, nil, fmt.Errorf("address header: message of %d bytes, want at least 3", len(msg))
	}
	l := int(msg[0])
	if l != 4 && l != 16 {
		return netip.AddrPort{}, nil, fmt.Errorf("address header: address length %d, want 4 or 16", l)
	}
	if len(msg) < 3+l {
		return netip.AddrPort{}, nil, fmt.Errorf("address header: message of %d bytes, want at least %d for a %d-byte address", len(msg), 3+l, l)
	}
	a, _ := netip.AddrFromSlice(msg[3 : 3+l])
	return netip.AddrPortFrom(a, uint16(msg[1])<<8|uint16(msg[2])), msg[3+l:], nil
}
