package tun

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// virtio_net_hdr (linux/virtio_net.h), little-endian, 10 bytes.
const (
	virtioNetHdrLen = 10

	virtioFlagNeedsCsum = 1

	virtioGSONone  = 0
	virtioGSOTCPv4 = 1
	virtioGSOTCPv6 = 4
)

// virtioHdr is the decoded form of a virtio_net_hdr.
type virtioHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

// decode reads a header. gVisor's header.VirtioNetHeader getters read the
// u16 fields big-endian, which is wrong for a TUN, so this is done by hand.
func (h *virtioHdr) decode(b []byte) {
	h.flags = b[0]
	h.gsoType = b[1]
	h.hdrLen = binary.LittleEndian.Uint16(b[2:])
	h.gsoSize = binary.LittleEndian.Uint16(b[4:])
	h.csumStart = binary.LittleEndian.Uint16(b[6:])
	h.csumOffset = binary.LittleEndian.Uint16(b[8:])
}

func (h *virtioHdr) encode(b []byte) {
	b[0] = h.flags
	b[1] = h.gsoType
	binary.LittleEndian.PutUint16(b[2:], h.hdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.gsoSize)
	binary.LittleEndian.PutUint16(b[6:], h.csumStart)
	binary.LittleEndian.PutUint16(b[8:], h.csumOffset)
}

// forPacket fills h for an outbound packet. gVisor marks every TCP packet of
// a GSO-capable endpoint (pure ACKs too) as carrying only the pseudo-header
// checksum, so all of them need NEEDS_CSUM; only those longer than one MSS
// are segmented by the kernel.
func (h *virtioHdr) forPacket(pkt *stack.PacketBuffer) {
	*h = virtioHdr{}
	gso := pkt.GSOOptions
	if gso.Type == stack.GSONone || !gso.NeedsCsum {
		return
	}
	l3 := len(pkt.NetworkHeader().Slice())
	h.flags = virtioFlagNeedsCsum
	h.csumStart = uint16(l3)
	h.csumOffset = gso.CsumOffset
	if pkt.Data().Size() <= int(gso.MSS) || gso.MSS == 0 {
		return
	}
	switch gso.Type {
	case stack.GSOTCPv4:
		h.gsoType = virtioGSOTCPv4
	case stack.GSOTCPv6:
		h.gsoType = virtioGSOTCPv6
	default:
		return
	}
	h.gsoSize = gso.MSS
	h.hdrLen = uint16(pkt.HeaderSize())
}
