package netfilter

import (
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// LinkEndpoint is the firewall's stage on a NIC's inbound path, below
// gVisor: while rules are loaded it reassembles IP fragments before
// gVisor parses them, as Linux's nf_defrag does before conntrack and the
// chains. gVisor parses no transport header of a fragment and runs its
// hooks before its own reassembly, so without this stage a port or flag
// rule never sees a fragmented datagram.
//
// Wrap a NIC's endpoint with NewLinkEndpoint, give the result to
// CreateNIC, and attach it with Firewall.AttachLink.
type LinkEndpoint struct {
	// Endpoint (gVisor's) passes the link calls to lower and interposes
	// this endpoint as lower's dispatcher.
	nested.Endpoint
	lower gstack.LinkEndpoint

	fw atomic.Pointer[Firewall]
}

var (
	_ gstack.LinkEndpoint      = (*LinkEndpoint)(nil)
	_ gstack.GSOEndpoint       = (*LinkEndpoint)(nil)
	_ gstack.NetworkDispatcher = (*LinkEndpoint)(nil)
)

// NewLinkEndpoint wraps lower. Until a firewall is attached, packets
// pass untouched.
func NewLinkEndpoint(lower gstack.LinkEndpoint) *LinkEndpoint {
	e := &LinkEndpoint{lower: lower}
	e.Endpoint.Init(lower, e)
	return e
}

// AttachLink makes fw reassemble the fragments arriving on e (while fw
// has rules loaded) and track the flows crossing it (always, as
// conntrack does once loaded).
func (fw *Firewall) AttachLink(e *LinkEndpoint) {
	fw.linked.Store(true)
	e.fw.Store(fw)
}

// peekLen is enough of a packet to find an IPv6 fragment header behind
// the usual extension headers; longer chains are passed to gVisor.
const peekLen = 256

// DeliverNetworkPacket implements stack.NetworkDispatcher for the lower
// endpoint: fragments are held and whole datagrams delivered in their
// place.
func (e *LinkEndpoint) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	if !e.IsAttached() {
		return
	}
	d := &e.Endpoint // delivers to the stack's dispatcher
	fw := e.fw.Load()
	if fw == nil {
		d.DeliverNetworkPacket(proto, pkt)
		return
	}
	size := pkt.Data().Size()
	hdr, ok := pkt.Data().PullUp(min(size, peekLen))
	if ok && size > peekLen && hasV6ExtHeaders(hdr) {
		// A long extension header chain must not hide a fragment
		// header past the peek (gVisor would reassemble after the
		// hooks): look at the whole packet.
		hdr, ok = pkt.Data().PullUp(size)
	}
	inactive := fw.cur.Load().empty
	if inactive {
		// Datagrams held when the rules were flushed still time out.
		fw.defrag.Expire()
	}
	if !ok || inactive || !IsFragment(hdr) {
		if ok {
			fw.flows.observeBytes(hdr, time.Now())
		}
		d.DeliverNetworkPacket(proto, pkt)
		return
	}
	v := pkt.ToView()
	whole, res := fw.defrag.Add(v.AsSlice())
	v.Release()
	if res == DefragPass {
		d.DeliverNetworkPacket(proto, pkt)
		return
	}
	if res != DefragDone {
		return
	}
	fw.flows.observeBytes(whole, time.Now())
	np := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(whole)})
	d.DeliverNetworkPacket(proto, np)
	np.DecRef()
}

// WritePackets implements stack.LinkEndpoint: outbound packets update
// their flows (after the hooks: what they dropped never gets here).
func (e *LinkEndpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	if fw := e.fw.Load(); fw != nil {
		now := time.Now()
		var buf [peekLen]byte
		for _, pkt := range pkts.AsSlice() {
			// Headers only, copied to the stack: no allocation per packet.
			n := copy(buf[:], pkt.NetworkHeader().Slice())
			th := pkt.TransportHeader().Slice()
			n += copy(buf[n:], th)
			if len(th) == 0 {
				// Raw writes (gVisor's resets and ICMP errors) carry
				// their headers in the payload.
				if d, ok := pkt.Data().PullUp(min(pkt.Data().Size(), peekLen-n)); ok {
					n += copy(buf[n:], d)
				}
			}
			fw.flows.observeBytes(buf[:n], now)
		}
	}
	return e.lower.WritePackets(pkts)
}

// hasV6ExtHeaders reports whether b is IPv6 with an extension header
// that may precede a fragment header.
func hasV6ExtHeaders(b []byte) bool {
	if len(b) < 7 || b[0]>>4 != 6 {
		return false
	}
	switch b[6] {
	case 0, 43, 60:
		return true
	}
	return false
}

// Stats are a firewall's counters of work done and dropped at its
// bounds (for tunstack ps and logs).
type Stats struct {
	Defrag    DefragStats    `json:"defrag"`
	Conntrack ConntrackStats `json:"conntrack"`
	Log       LogStats       `json:"log"`
}

// Stats returns the firewall's counters.
func (fw *Firewall) Stats() Stats {
	return Stats{Defrag: fw.defrag.Stats(), Conntrack: fw.flows.stats(), Log: fw.logq.stats()}
}
