// Package netdev is a packet-level device interface between a tunstack
// stack and whatever carries its packets, in the spirit of wireguard-go's
// tun.Device: batched Read and Write of whole IP packets at an offset, an
// MTU, and Close.
//
// It lets a stack sit behind one's own transport (a VPN tunnel, a VM's
// virtio queue, a QUIC datagram stream, a UDP socket) and one's own code
// sit in front of a TUN device:
//
//   - NewEndpoint turns any Device into a NIC for stack.Stack.AddNIC.
//   - tun.NewPacketDevice turns a TUN file descriptor into a Device.
//   - Pipe returns two connected in-memory Devices.
//
// Packets are plain IPv4 or IPv6 packets with no link-layer header, no
// larger than the MTU, with complete checksums. A device that also
// implements OffloadDevice (a TUN opened with offload, through
// tun.NewPacketDevice) carries offload metadata: a virtio-net header before
// each packet, which lets TCP super-packets of up to 64 KiB with partial
// checksums cross in one piece; NewEndpoint then enables segmentation and
// checksum offload in the stack.
package netdev

import "errors"

// Device reads and writes batches of IP packets. Implementations must
// allow one Read concurrently with any number of Writes, and Close
// concurrently with both.
type Device interface {
	// Read blocks until at least one packet is available, then reads up
	// to len(bufs) packets: packet i goes to bufs[i][offset:] and its
	// length to sizes[i]. It returns the number of packets read. After
	// Close it returns an error that wraps net.ErrClosed (or io.EOF).
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)
	// Write sends the packets bufs[i][offset:]. The bytes before offset
	// are headroom the device may use for its own header. It returns how
	// many packets were sent; the caller keeps ownership of bufs.
	Write(bufs [][]byte, offset int) (n int, err error)
	// MTU is the largest packet the device carries, in bytes.
	MTU() int
	// BatchSize is the most packets one Read or Write handles; callers
	// size their slices to it. It is at least 1.
	BatchSize() int
	// Close releases the device and makes blocked and later calls fail.
	Close() error
}

// ErrTooLarge reports a packet larger than the buffer it was to be read
// into, or larger than the device's MTU.
var ErrTooLarge = errors.New("netdev: packet larger than the buffer or MTU")
