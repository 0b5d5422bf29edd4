package tun

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/netdev"
)

// packetBatch is how many packets one PacketDevice.Read drains at most.
const packetBatch = 32

// PacketDevice is a netdev.Device on a TUN file descriptor: one packet per
// read(2) or write(2), a batch being what is ready without waiting. It puts
// one's own code in front of a TUN (a VPN client, a packet filter) with
// the same interface a stack NIC has behind it (netdev.NewEndpoint).
type PacketDevice struct {
	f       *os.File
	raw     syscall.RawConn
	mtu     int
	offload bool // IFF_VNET_HDR: frames start with a virtio-net header
}

var _ netdev.OffloadDevice = (*PacketDevice)(nil)

// NewPacketDevice wraps a TUN queue descriptor (Device.File, or one
// received with ReceiveFiles) with MTU mtu (see MTU). It takes ownership of
// f: Close closes it. A device opened with offload (IFF_VNET_HDR, see
// Device.Offload) is a netdev.OffloadDevice: each packet's virtio-net
// header sits in the netdev.VirtioNetHdrLen bytes before the offset, and
// packets may be TCP super-packets of up to 64 KiB.
func NewPacketDevice(f *os.File, mtu int) (*PacketDevice, error) {
	if f == nil || mtu <= 0 {
		return nil, fmt.Errorf("tun: packet device needs a file and a positive MTU, got %v and %d", f, mtu)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("tun: packet device on %s: %w", f.Name(), err)
	}
	var flags uint16
	var ierr error
	if err := raw.Control(func(fd uintptr) {
		var ifr *unix.Ifreq
		if ifr, ierr = unix.NewIfreq(""); ierr != nil {
			return
		}
		if ierr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr); ierr == nil {
			flags = ifr.Uint16()
		}
	}); err != nil {
		return nil, fmt.Errorf("tun: packet device on %s: %w", f.Name(), err)
	}
	if ierr != nil {
		return nil, fmt.Errorf("tun: packet device on %s: TUNGETIFF: %w (not a TUN device?)", f.Name(), ierr)
	}
	if flags&unix.IFF_TUN == 0 || flags&unix.IFF_NO_PI == 0 {
		return nil, fmt.Errorf("tun: packet device on %s: flags %#x, want IFF_TUN|IFF_NO_PI", f.Name(), flags)
	}
	return &PacketDevice{f: f, raw: raw, mtu: mtu, offload: flags&unix.IFF_VNET_HDR != 0}, nil
}

// Offload implements netdev.OffloadDevice: whether frames carry
// virtio-net headers.
func (d *PacketDevice) Offload() bool { return d.offload }

// frameStart is where a frame starts in a buffer whose packet starts at
// offset: the header's room before it with offload.
func (d *PacketDevice) frameStart(offset int) (int, error) {
	if !d.offload {
		return offset, nil
	}
	if offset < netdev.VirtioNetHdrLen {
		return 0, fmt.Errorf("tun: offload device needs an offset of at least %d for the virtio-net header, got %d", netdev.VirtioNetHdrLen, offset)
	}
	return offset - netdev.VirtioNetHdrLen, nil
}

// Read implements netdev.Device: it waits for one packet, then takes
// those already queued, up to len(bufs) and packetBatch.
func (d *PacketDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	start, err := d.frameStart(offset)
	if err != nil {
		return 0, err
	}
	n := 0
	for n < len(bufs) && n < packetBatch {
		var got int
		var rerr error
		wait := n == 0
		err := d.raw.Read(func(fd uintptr) bool {
			got, rerr = unix.Read(int(fd), bufs[n][start:])
			if rerr == unix.EINTR {
				return false
			}
			return !(wait && rerr == unix.EAGAIN)
		})
		if err != nil {
			return n, fmt.Errorf("tun: read: %w", err)
		}
		if rerr == unix.EAGAIN {
			return n, nil
		}
		if rerr != nil {
			return n, fmt.Errorf("tun: read: %w", rerr)
		}
		if got -= offset - start; got <= 0 {
			continue // a frame with no packet after its header
		}
		sizes[n] = got
		n++
	}
	return n, nil
}

// Write implements netdev.Device: one write(2) per packet.
func (d *PacketDevice) Write(bufs [][]byte, offset int) (int, error) {
	start, err := d.frameStart(offset)
	if err != nil {
		return 0, err
	}
	for i, b := range bufs {
		var werr error
		err := d.raw.Write(func(fd uintptr) bool {
			_, werr = unix.Write(int(fd), b[start:])
			return werr != unix.EINTR
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				err = fmt.Errorf("tun: write: device queue full: %w", err)
			} else {
				err = fmt.Errorf("tun: write: %w", err)
			}
			return i, err
		}
	}
	return len(bufs), nil
}

// MTU implements netdev.Device.
func (d *PacketDevice) MTU() int { return d.mtu }

// BatchSize implements netdev.Device.
func (d *PacketDevice) BatchSize() int { return packetBatch }

// Close implements netdev.Device: it closes the descriptor, which wakes a
// blocked Read with an error wrapping os.ErrClosed.
func (d *PacketDevice) Close() error { return d.f.Close() }
