package netfilter

import (
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// CTState is a set of conntrack states, as matched by -m conntrack
// --ctstate and -m state --state.
type CTState uint8

// Conntrack states. Their order is the order iptables prints them in.
const (
	CTInvalid CTState = 1 << iota
	CTNew
	CTRelated
	CTEstablished
	CTUntracked
	// CTSNAT and CTDNAT are -m conntrack's virtual states: the
	// connection's source (destination) was translated.
	CTSNAT
	CTDNAT
	ctAll = CTInvalid | CTNew | CTRelated | CTEstablished | CTUntracked
	ctNAT = CTSNAT | CTDNAT
)

var ctStateNames = []struct {
	s    CTState
	name string
}{
	{CTInvalid, "INVALID"},
	{CTNew, "NEW"},
	{CTRelated, "RELATED"},
	{CTEstablished, "ESTABLISHED"},
	{CTUntracked, "UNTRACKED"},
	{CTSNAT, "SNAT"},
	{CTDNAT, "DNAT"},
}

func (s CTState) String() string {
	out := ""
	for _, n := range ctStateNames {
		if s&n.s != 0 {
			if out != "" {
				out += ","
			}
			out += n.name
		}
	}
	return out
}

// TCP flag bits as in the TCP header.
const (
	TCPFin uint8 = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
	TCPUrg
	TCPEce
	TCPCwr
)

// Packet is what rules and Go hooks see of a packet. It is only valid
// during the call that received it.
type Packet struct {
	// Family is IPv4 or IPv6.
	Family Family
	// Hook is the iptables hook the packet is traversing (after the
	// gateway mapping; see the package documentation).
	Hook Hook
	// Src and Dst are the network addresses.
	Src, Dst netip.Addr
	// Protocol is the transport protocol number.
	Protocol uint8
	// SrcPort and DstPort are set for TCP and UDP (for ICMP echo, DstPort
	// carries nothing).
	SrcPort, DstPort uint16
	// TCPFlags holds the TCP flags (TCPSyn, ...).
	TCPFlags uint8
	// ICMPType and ICMPCode are set for ICMP and ICMPv6.
	ICMPType, ICMPCode uint8
	// HasTransport reports whether the transport header was present
	// (false for non-first fragments and unknown protocols).
	HasTransport bool
	// Length is the IP packet length in bytes.
	Length int
	// InInterface and OutInterface are the interface names as matched by
	// -i and -o ("" when not known at this hook).
	InInterface, OutInterface string

	pkt      *gstack.PacketBuffer
	fw       *Firewall
	ctState  CTState
	ctDone   bool
	flowDone bool
	fl       *flow
}

// Mark returns the packet's mark (as set by -j MARK).
func (p *Packet) Mark() uint32 { return p.pkt.Mark }

// SetMark sets the packet's mark.
func (p *Packet) SetMark(m uint32) { p.pkt.Mark = m }

// Buffer returns the underlying gVisor packet, for inspection only.
func (p *Packet) Buffer() *gstack.PacketBuffer { return p.pkt }

// CTState returns the packet's conntrack state (one of the CT* bits).
func (p *Packet) CTState() CTState {
	if !p.ctDone {
		p.ctState = conntrackState(p)
		p.ctDone = true
	}
	return p.ctState
}

var packetPool = sync.Pool{New: func() any { return new(Packet) }}

// parse fills p from pkt. It never fails: fields it cannot read stay
// zero, which is what a rule expecting them will not match.
func (p *Packet) parse(pkt *gstack.PacketBuffer, fam Family) {
	*p = Packet{pkt: pkt, Family: fam}
	nh := pkt.NetworkHeader().Slice()
	switch fam {
	case IPv4:
		if len(nh) < header.IPv4MinimumSize {
			return
		}
		h := header.IPv4(nh)
		p.Src = netip.AddrFrom4(h.SourceAddress().As4())
		p.Dst = netip.AddrFrom4(h.DestinationAddress().As4())
		p.Protocol = h.Protocol()
		p.Length = int(h.TotalLength())
	case IPv6:
		if len(nh) < header.IPv6MinimumSize {
			return
		}
		h := header.IPv6(nh)
		p.Src = netip.AddrFrom16(h.SourceAddress().As16())
		p.Dst = netip.AddrFrom16(h.DestinationAddress().As16())
		// The next header after extension headers is what -p matches,
		// as gVisor parsed it.
		p.Protocol = uint8(pkt.TransportProtocolNumber)
		p.Length = int(h.PayloadLength()) + header.IPv6MinimumSize
	}
	if p.Length == 0 {
		p.Length = pkt.Size()
	}
	th := pkt.TransportHeader().Slice()
	switch p.Protocol {
	case uint8(header.TCPProtocolNumber):
		if len(th) >= header.TCPMinimumSize {
			t := header.TCP(th)
			p.SrcPort, p.DstPort = t.SourcePort(), t.DestinationPort()
			p.TCPFlags = uint8(t.Flags())
			p.HasTransport = true
		}
	case uint8(header.UDPProtocolNumber):
		if len(th) >= header.UDPMinimumSize {
			u := header.UDP(th)
			p.SrcPort, p.DstPort = u.SourcePort(), u.DestinationPort()
			p.HasTransport = true
		}
	case uint8(header.ICMPv4ProtocolNumber), uint8(header.ICMPv6ProtocolNumber):
		if len(th) >= 2 {
			p.ICMPType, p.ICMPCode = th[0], th[1]
			p.HasTransport = true
		}
	}
}

// isICMPError reports whether p is an ICMP error, which conntrack relates
// to the flow it quotes.
func (p *Packet) isICMPError() bool {
	switch p.Protocol {
	case uint8(header.ICMPv4ProtocolNumber):
		switch p.ICMPType {
		case 3, 4, 5, 11, 12:
			return true
		}
	case uint8(header.ICMPv6ProtocolNumber):
		return p.ICMPType >= 1 && p.ICMPType <= 4
	}
	return false
}

func addrFromTCPIP(a tcpip.Address) netip.Addr {
	switch a.Len() {
	case 4:
		return netip.AddrFrom4(a.As4())
	case 16:
		return netip.AddrFrom16(a.As16())
	}
	return netip.Addr{}
}

func conntrackState(p *Packet) CTState {
	var info gstack.ConnTrackInfo
	if p.pkt == nil || !p.pkt.FillConnTrackInfo(gstack.ConnTrackInfoOpts{FillState: true}, &info) {
		if p.isICMPError() && p.fw != nil {
			// gVisor relates an error only to a connection it kept, and
			// it keeps none for a packet REJECT refused. Linux relates
			// an error to the flow of the packet it quotes, and calls
			// one that quotes no flow INVALID.
			if p.fw.flows.quotes(p) {
				return CTRelated
			}
			return CTInvalid
		}
		// gVisor tracks TCP, UDP and ICMP echo; Linux tracks the rest
		// generically, which starts as NEW.
		if p.Protocol == uint8(header.TCPProtocolNumber) {
			return CTInvalid
		}
		return CTNew
	}
	if p.isICMPError() {
		return CTRelated
	}
	// Linux calls every reply-direction packet ESTABLISHED (a SYN-ACK
	// included); gVisor's TCP state says NEW until the handshake ends.
	if p.Src != addrFromTCPIP(info.SrcAddr) || (p.hasPorts() && p.SrcPort != info.SrcPort) {
		return CTEstablished
	}
	switch info.State {
	case gstack.ConnTrackStateNew:
		return CTNew
	case gstack.ConnTrackStateEstablished, gstack.ConnTrackStateEstablishedReply:
		return CTEstablished
	}
	return CTInvalid
}

func (p *Packet) hasPorts() bool {
	return p.HasTransport && (p.Protocol == uint8(header.TCPProtocolNumber) || p.Protocol == uint8(header.UDPProtocolNumber))
}

// natState returns CTSNAT and/or CTDNAT when the packet's connection
// was translated: its reply tuple is not the original one reversed (as
// Linux sets IPS_SRC_NAT/IPS_DST_NAT only when NAT changed the tuple).
func natState(p *Packet) CTState {
	var orig, reply gstack.ConnTrackInfo
	if p.pkt == nil || !p.pkt.FillConnTrackInfo(gstack.ConnTrackInfoOpts{}, &orig) ||
		!p.pkt.FillConnTrackInfo(gstack.ConnTrackInfoOpts{UseReplyDir: true}, &reply) {
		return 0
	}
	var s CTState
	if orig.SrcAddr != reply.DstAddr || orig.SrcPort != reply.DstPort {
		s |= CTSNAT
	}
	if orig.DstAddr != reply.SrcAddr || orig.DstPort != reply.SrcPort {
		s |= CTDNAT
	}
	return s
}

// undoDNAT rewrites a packet about to be rejected back to the
// destination its sender used, so that the rejection built from it (a
// TCP RST, or an ICMP error quoting it) comes from the address and port
// the sender knows, as Linux's REJECT replies are un-NATed by
// conntrack. The packet is dropped afterwards, so changing it is safe.
func undoDNAT(p *Packet) {
	var orig, reply gstack.ConnTrackInfo
	if p.pkt == nil || !p.pkt.FillConnTrackInfo(gstack.ConnTrackInfoOpts{}, &orig) ||
		!p.pkt.FillConnTrackInfo(gstack.ConnTrackInfoOpts{UseReplyDir: true}, &reply) {
		return
	}
	dnat := orig.DstAddr != reply.SrcAddr || orig.DstPort != reply.SrcPort
	// Only packets of the original direction, as translated.
	if !dnat || p.Dst != addrFromTCPIP(reply.SrcAddr) {
		return
	}
	nh := p.pkt.NetworkHeader().Slice()
	var old tcpip.Address
	switch {
	case p.Family == IPv4 && len(nh) >= header.IPv4MinimumSize:
		ip := header.IPv4(nh)
		old = ip.DestinationAddress()
		ip.SetDestinationAddressWithChecksumUpdate(orig.DstAddr)
	case p.Family == IPv6 && len(nh) >= header.IPv6MinimumSize:
		ip := header.IPv6(nh)
		old = ip.DestinationAddress()
		ip.SetDestinationAddress(orig.DstAddr)
	default:
		return
	}
	th := p.pkt.TransportHeader().Slice()
	switch {
	case p.Protocol == uint8(header.TCPProtocolNumber) && len(th) >= header.TCPMinimumSize:
		t := header.TCP(th)
		t.UpdateChecksumPseudoHeaderAddress(old, orig.DstAddr, true)
		t.SetDestinationPortWithChecksumUpdate(orig.DstPort)
	case p.Protocol == uint8(header.UDPProtocolNumber) && len(th) >= header.UDPMinimumSize:
		u := header.UDP(th)
		u.UpdateChecksumPseudoHeaderAddress(old, orig.DstAddr, true)
		u.SetDestinationPortWithChecksumUpdate(orig.DstPort)
	}
}
