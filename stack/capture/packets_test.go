package capture

import (
	"encoding/binary"
	"net/netip"
)

// testPacket builds an IPv4 or IPv6 packet (by src's family) with a
// minimal transport header: TCP and UDP carry ports, ICMP an echo request.
func testPacket(proto uint8, src, dst string, sport, dport uint16, payload int) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	var l4 []byte
	switch proto {
	case protoTCP:
		l4 = make([]byte, 20+payload)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint32(l4[4:], 1000)
		l4[12] = 5 << 4
		l4[13] = 0x02 // SYN
		binary.BigEndian.PutUint16(l4[14:], 65535)
	case protoUDP:
		l4 = make([]byte, 8+payload)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	case protoICMP, protoICMPv6:
		l4 = make([]byte, 8+payload)
		l4[0] = 8
		if proto == protoICMPv6 {
			l4[0] = 128
		}
		binary.BigEndian.PutUint16(l4[4:], 7)
		binary.BigEndian.PutUint16(l4[6:], 1)
	default:
		l4 = make([]byte, payload)
	}
	if s.Is4() {
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
		h[8] = 64
		h[9] = proto
		copy(h[12:], s.AsSlice())
		copy(h[16:], d.AsSlice())
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(h[i:]))
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
		return append(h, l4...)
	}
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
	h[6] = proto
	h[7] = 64
	copy(h[8:], s.AsSlice())
	copy(h[24:], d.AsSlice())
	return append(h, l4...)
}

// filterCorpus is a mix of traffic the filter tests run expressions over.
func filterCorpus() [][]byte {
	return [][]byte{
		testPacket(protoTCP, "10.0.2.100", "10.0.2.2", 40000, 80, 0),
		testPacket(protoTCP, "10.0.2.2", "10.0.2.100", 80, 40000, 10),
		testPacket(protoUDP, "10.0.2.100", "10.0.2.3", 5353, 53, 30),
		testPacket(protoUDP, "10.0.2.3", "10.0.2.100", 53, 5353, 60),
		testPacket(protoICMP, "10.0.2.100", "198.18.0.1", 0, 0, 56),
		testPacket(protoTCP, "fd00::100", "fd00::2", 41000, 443, 0),
		testPacket(protoUDP, "fd00::100", "fd00::3", 5000, 53, 20),
		testPacket(protoICMPv6, "fd00::100", "fd00::2", 0, 0, 56),
		testPacket(protoTCP, "198.18.0.2", "10.0.2.100", 50000, 8080, 5),
		testPacket(protoUDP, "198.18.0.2", "10.0.2.100", 6000, 8085, 5),
		testPacket(47, "10.0.2.100", "198.18.0.1", 0, 0, 4), // GRE: no ports
	}
}
