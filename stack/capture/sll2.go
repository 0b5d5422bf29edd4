package capture

import (
	"encoding/binary"
	"fmt"
)

// LinkTypeLinuxSLL2 is pcap's LINKTYPE_LINUX_SLL2, Linux's cooked capture
// v2: what tcpdump -i any writes. Each record is a 20-byte SLL2 header
// (see SLL2Header) followed by the packet; tunstack's packets are IP, so
// the header's protocol is an EtherType and its address is empty.
const LinkTypeLinuxSLL2 = 276

// SLL2HeaderLen is the length of the LINKTYPE_LINUX_SLL2 header.
const SLL2HeaderLen = 20

const (
	// arphrdNone is a TUN device's hardware type (ARPHRD_NONE): no
	// link-layer header and no address.
	arphrdNone = 0xfffe
	// packetHost and packetOutgoing are the Linux packet types
	// (PACKET_HOST, PACKET_OUTGOING) that tcpdump prints as In and Out.
	packetHost     = 0
	packetOutgoing = 4

	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
)

// AppendSLL2Header appends to b the SLL2 header of an IP packet: its
// EtherType (from the version nibble of data's first byte; 0 when it is
// neither IPv4 nor IPv6), interface index ifIndex, ARPHRD_NONE, the packet
// type for dir (In: PACKET_HOST, Out: PACKET_OUTGOING) and no address.
func AppendSLL2Header(b []byte, data []byte, ifIndex uint32, dir Direction) []byte {
	var h [SLL2HeaderLen]byte
	if len(data) > 0 {
		switch data[0] >> 4 {
		case 4:
			binary.BigEndian.PutUint16(h[0:], etherTypeIPv4)
		case 6:
			binary.BigEndian.PutUint16(h[0:], etherTypeIPv6)
		}
	}
	// h[2:4] is reserved (zero).
	binary.BigEndian.PutUint32(h[4:], ifIndex)
	binary.BigEndian.PutUint16(h[8:], arphrdNone)
	h[10] = packetHost
	if dir == Out {
		h[10] = packetOutgoing
	}
	// h[11] is the address length and h[12:20] the address: none.
	return append(b, h[:]...)
}

// ParseSLL2Header splits an SLL2 record into its interface index, its
// direction (In for PACKET_HOST and the other incoming types, Out for
// PACKET_OUTGOING) and the packet behind the header.
func ParseSLL2Header(rec []byte) (ifIndex uint32, dir Direction, data []byte, err error) {
	if len(rec) < SLL2HeaderLen {
		return 0, 0, nil, fmt.Errorf("capture: SLL2 record of %d bytes is shorter than its %d-byte header", len(rec), SLL2HeaderLen)
	}
	dir = In
	if rec[10] == packetOutgoing {
		dir = Out
	}
	return binary.BigEndian.Uint32(rec[4:]), dir, rec[SLL2HeaderLen:], nil
}
