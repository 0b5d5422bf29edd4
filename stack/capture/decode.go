package capture

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers the filter and the printer know.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// decoded are the fields of a packet that filters test and the printer
// shows. Decoding never fails: what cannot be read stays zero.
type decoded struct {
	version  int // 4, 6, or 0 when not IP
	proto    uint8
	src, dst netip.Addr
	// hasPorts is set for the first fragment of TCP, UDP and SCTP.
	hasPorts      bool
	sport, dport  uint16
	transport     []byte // from the transport header on
	fragment      bool   // a non-first fragment
	ipLen, hdrLen int
	raw           []byte // the whole packet, for proto[] loads
}

// decode reads an IPv4 or IPv6 packet's addresses, protocol and ports.
func (d *decoded) decode(b []byte) {
	*d = decoded{raw: b}
	if len(b) < 1 {
		return
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return
		}
		ihl := int(b[0]&0xf) * 4
		if ihl < 20 || len(b) < ihl {
			return
		}
		d.version, d.proto, d.hdrLen = 4, b[9], ihl
		d.ipLen = int(binary.BigEndian.Uint16(b[2:]))
		d.src = netip.AddrFrom4([4]byte(b[12:16]))
		d.dst = netip.AddrFrom4([4]byte(b[16:20]))
		d.fragment = binary.BigEndian.Uint16(b[6:])&0x1fff != 0
		d.transport = b[ihl:]
	case 6:
		if len(b) < 40 {
			return
		}
		d.version, d.hdrLen = 6, 40
		d.ipLen = 40 + int(binary.BigEndian.Uint16(b[4:]))
		d.src = netip.AddrFrom16([16]byte(b[8:24]))
		d.dst = netip.AddrFrom16([16]byte(b[24:40]))
		next, off := b[6], 40
		// Skip extension headers to the transport header.
	walk:
		for i := 0; i < 8; i++ {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(b) < off+8 {
					return
				}
				next, off = b[off], off+8*(int(b[off+1])+1)
			case 44: // fragment
				if len(b) < off+8 {
					return
				}
				d.fragment = binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0
				next, off = b[off], off+8
			case 51: // authentication header
				if len(b) < off+8 {
					return
				}
				next, off = b[off], off+4*(int(b[off+1])+2)
			default:
				break walk
			}
		}
		if off > len(b) {
			return
		}
		d.proto, d.transport = next, b[off:]
	default:
		return
	}
	switch d.proto {
	case protoTCP, protoUDP, protoSCTP:
		if !d.fragment && len(d.transport) >= 4 {
			d.hasPorts = true
			d.sport = binary.BigEndian.Uint16(d.transport[0:])
			d.dport = binary.BigEndian.Uint16(d.transport[2:])
		}
	}
}
