package capture

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// completeChecksum fills in the TCP or UDP checksum of a whole captured
// packet (b holds every byte) when it does not verify. With checksum
// offload the packet on the wire carries only the pseudo-header's partial
// sum, for the device to complete, so without this tcpdump -v would call
// nearly every TCP segment "incorrect". Fragments and packets cut by the
// snapshot length are left as they are.
func completeChecksum(b []byte, d *decoded) {
	if d.version == 0 || d.fragment || d.ipLen != len(b) || (d.proto != protoTCP && d.proto != protoUDP) {
		return
	}
	seg := d.transport
	off := 16 // TCP checksum offset
	if d.proto == protoUDP {
		off = 6
		if len(seg) < header.UDPMinimumSize || int(header.UDP(seg).Length()) != len(seg) {
			return
		}
		if d.version == 4 && header.UDP(seg).Checksum() == 0 {
			return // no checksum (allowed for UDP over IPv4)
		}
	} else if len(seg) < header.TCPMinimumSize {
		return
	}
	src, dst := tcpip.AddrFromSlice(d.src.AsSlice()), tcpip.AddrFromSlice(d.dst.AsSlice())
	pseudo := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(d.proto), src, dst, uint16(len(seg)))
	if checksum.Checksum(seg, pseudo) == 0xffff {
		return
	}
	seg[off], seg[off+1] = 0, 0
	sum := ^checksum.Checksum(seg, pseudo)
	if d.proto == protoUDP && sum == 0 {
		sum = 0xffff
	}
	seg[off], seg[off+1] = byte(sum>>8), byte(sum)
}
