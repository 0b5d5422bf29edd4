package ethlink

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Router advertisement lifetimes (seconds), those of libslirp.
const (
	routerLifetime    = 1800
	validLifetime     = 86400
	preferredLifetime = 14400
	rdnssLifetime     = 1800
)

// allNodes is ff02::1, where router advertisements go.
var allNodes = netip.MustParseAddr("ff02::1")

// ndp handles neighbour discovery in an IPv6 frame: it answers
// solicitations and swallows the rest of NDP; other IPv6 goes to the stack.
func (l *Link) ndp(frame []byte, reply func([]byte)) bool {
	ip := header.IPv6(frame[header.EthernetMinimumSize:])
	if len(ip) < header.IPv6MinimumSize+header.ICMPv6MinimumSize || tcpip.TransportProtocolNumber(ip.NextHeader()) != header.ICMPv6ProtocolNumber {
		return false
	}
	icmp := header.ICMPv6(ip[header.IPv6MinimumSize:])
	switch icmp.Type() {
	case header.ICMPv6NeighborSolicit:
		if l.cfg.Prefix6.IsValid() && len(icmp) >= header.ICMPv6NeighborSolicitMinimumSize {
			if r := l.neighborAdvert(frame[6:12], ip, icmp); r != nil {
				reply(r)
			}
		}
		return true
	case header.ICMPv6RouterSolicit:
		if l.cfg.Prefix6.IsValid() {
			reply(l.RouterAdvert())
		}
		return true
	case header.ICMPv6NeighborAdvert, header.ICMPv6RouterAdvert, header.ICMPv6RedirectMsg:
		return true
	}
	return false
}

// neighborAdvert answers a solicitation for one of the link's addresses.
// Duplicate address detection (from ::) is never answered: the sandbox's
// addresses are its own.
func (l *Link) neighborAdvert(srcMAC []byte, ip header.IPv6, icmp header.ICMPv6) []byte {
	ns := header.NDPNeighborSolicit(icmp.MessageBody())
	target := addrOf(ns.TargetAddress())
	src := addrOf(ip.SourceAddress())
	if src.IsUnspecified() || (target != l.cfg.Gateway6 && target != l.cfg.DNS6 && target != RouterLinkLocal) {
		return nil
	}
	mac := MACFor(target)
	body := make([]byte, header.ICMPv6NeighborAdvertMinimumSize+8)
	body[0] = byte(header.ICMPv6NeighborAdvert)
	flags := byte(0x40 | 0x20) // solicited, override
	if target == RouterLinkLocal || target == l.cfg.Gateway6 {
		flags |= 0x80 // router
	}
	body[4] = flags
	copy(body[8:24], target.AsSlice())
	body[24], body[25] = 2, 1 // target link-layer address
	copy(body[26:32], mac[:])
	return l.frame(srcMAC, mac, target, src, body)
}

// RouterAdvert returns a router advertisement to all nodes: the prefix
// for SLAAC, the MTU, and the DNS address.
func (l *Link) RouterAdvert() []byte {
	body := make([]byte, 16+8+8+32+24)
	body[0] = byte(header.ICMPv6RouterAdvert)
	body[4] = 64 // current hop limit
	binary.BigEndian.PutUint16(body[6:], routerLifetime)
	o := body[16:]
	mac := MACFor(RouterLinkLocal)
	o[0], o[1] = 1, 1 // source link-layer address
	copy(o[2:8], mac[:])
	o = o[8:]
	o[0], o[1] = 5, 1 // MTU
	binary.BigEndian.PutUint32(o[4:], uint32(l.cfg.MTU))
	o = o[8:]
	o[0], o[1] = 3, 4 // prefix information
	o[2] = byte(l.cfg.Prefix6.Bits())
	o[3] = 0xc0 // on-link, autonomous
	binary.BigEndian.PutUint32(o[4:], validLifetime)
	binary.BigEndian.PutUint32(o[8:], preferredLifetime)
	copy(o[16:32], l.cfg.Prefix6.Masked().Addr().AsSlice())
	o = o[32:]
	o[0], o[1] = 25, 3 // recursive DNS server
	binary.BigEndian.PutUint32(o[4:], rdnssLifetime)
	copy(o[8:24], l.cfg.DNS6.AsSlice())
	if l.cfg.MTU == 0 {
		// Drop the MTU option: shift the later options over it.
		copy(body[24:], body[32:])
		body = body[:len(body)-8]
	}
	if !l.cfg.DNS6.IsValid() {
		body = body[:len(body)-24]
	}
	dst := [6]byte{0x33, 0x33, 0, 0, 0, 1}
	return l.frame(dst[:], mac, RouterLinkLocal, allNodes, body)
}

// frame wraps an ICMPv6 message in IPv6 (hop limit 255, as NDP requires)
// and Ethernet, with its checksum.
func (l *Link) frame(dstMAC []byte, srcMAC [6]byte, src, dst netip.Addr, body []byte) []byte {
	out := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+len(body))
	copy(out[0:6], dstMAC)
	copy(out[6:12], srcMAC[:])
	binary.BigEndian.PutUint16(out[12:], uint16(header.IPv6ProtocolNumber))
	ip := header.IPv6(out[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(len(body)),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          header.NDPHopLimit,
		SrcAddr:           tcpip.AddrFrom16(src.As16()),
		DstAddr:           tcpip.AddrFrom16(dst.As16()),
	})
	icmp := header.ICMPv6(ip[header.IPv6MinimumSize:])
	copy(icmp, body)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: icmp, Src: tcpip.AddrFrom16(src.As16()), Dst: tcpip.AddrFrom16(dst.As16()),
	}))
	return out
}

func addrOf(a tcpip.Address) netip.Addr {
	n, _ := netip.AddrFromSlice(a.AsSlice())
	return n
}
