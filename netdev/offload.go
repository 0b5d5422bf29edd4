package netdev

import (
	"encoding/binary"
	"fmt"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// VirtioNetHdrLen is the size of a virtio_net_hdr, the offload metadata an
// OffloadDevice carries before each packet.
const VirtioNetHdrLen = 10

// virtio_net_hdr flags and GSO types (linux/virtio_net.h).
const (
	VirtioFlagNeedsCsum = 1 // the checksum at CsumStart+CsumOffset holds only the pseudo-header sum
	VirtioGSONone       = 0
	VirtioGSOTCPv4      = 1
	VirtioGSOTCPv6      = 4
)

// gsoMaxSize is the largest super-packet: the IPv4 total-length limit.
const gsoMaxSize = 1<<16 - 1

// OffloadDevice is a Device that carries offload metadata: each packet is
// preceded, in the VirtioNetHdrLen bytes just before offset, by a
// virtio_net_hdr (linux/virtio_net.h; see VirtioNetHdr). A packet may then
// be a TCP super-packet of up to 64 KiB that the receiver segments (GSO),
// and its TCP checksum may hold only the pseudo-header sum (NeedsCsum).
// This is what a TUN opened with IFF_VNET_HDR, or a virtio-net queue,
// carries; a transport that moves whole super-packets saves per-packet
// work on both sides.
type OffloadDevice interface {
	Device
	// Offload reports whether packets carry virtio-net headers; offsets
	// passed to Read and Write are then at least VirtioNetHdrLen.
	Offload() bool
}

// VirtioNetHdr is a decoded virtio_net_hdr.
type VirtioNetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // length of the headers (IP and TCP) of a GSO packet
	GSOSize    uint16 // the MSS to segment a GSO packet to
	CsumStart  uint16
	CsumOffset uint16
}

// Decode reads a header from b, which must hold VirtioNetHdrLen bytes. The
// fields are little-endian, as on a TUN on every Linux architecture
// tunstack runs on.
func (h *VirtioNetHdr) Decode(b []byte) error {
	if len(b) < VirtioNetHdrLen {
		return fmt.Errorf("netdev: virtio-net header of %d bytes, want %d", len(b), VirtioNetHdrLen)
	}
	h.Flags = b[0]
	h.GSOType = b[1]
	h.HdrLen = binary.LittleEndian.Uint16(b[2:])
	h.GSOSize = binary.LittleEndian.Uint16(b[4:])
	h.CsumStart = binary.LittleEndian.Uint16(b[6:])
	h.CsumOffset = binary.LittleEndian.Uint16(b[8:])
	return nil
}

// Encode writes the header to b[:VirtioNetHdrLen].
func (h *VirtioNetHdr) Encode(b []byte) {
	_ = b[VirtioNetHdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
}

// ForPacket describes an outbound packet of a GSO-capable endpoint (this
// package's, or tun's). gVisor leaves every such TCP packet (pure ACKs
// too) with only the pseudo-header checksum, so all need NeedsCsum; those
// longer than one MSS are marked for segmentation.
func (h *VirtioNetHdr) ForPacket(pkt *gstack.PacketBuffer) {
	*h = VirtioNetHdr{}
	gso := pkt.GSOOptions
	if gso.Type == gstack.GSONone || !gso.NeedsCsum {
		return
	}
	h.Flags = VirtioFlagNeedsCsum
	h.CsumStart = uint16(len(pkt.NetworkHeader().Slice()))
	h.CsumOffset = gso.CsumOffset
	if pkt.Data().Size() <= int(gso.MSS) || gso.MSS == 0 {
		return
	}
	switch gso.Type {
	case gstack.GSOTCPv4:
		h.GSOType = VirtioGSOTCPv4
	case gstack.GSOTCPv6:
		h.GSOType = VirtioGSOTCPv6
	default:
		return
	}
	h.GSOSize = gso.MSS
	h.HdrLen = uint16(pkt.HeaderSize())
}
