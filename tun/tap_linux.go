package tun

import (
	"encoding/binary"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// shiftVirtioOffsets moves an encoded virtio-net header's csum_start and
// hdr_len past a link header of l2 bytes: they count from the frame's
// start, and on a TAP the frame starts with the Ethernet header.
func shiftVirtioOffsets(vh []byte, l2 int) {
	if vh[0]&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
		binary.LittleEndian.PutUint16(vh[6:], binary.LittleEndian.Uint16(vh[6:])+uint16(l2))
	}
	if vh[1] != unix.VIRTIO_NET_HDR_GSO_NONE {
		binary.LittleEndian.PutUint16(vh[2:], binary.LittleEndian.Uint16(vh[2:])+uint16(l2))
	}
}

// HardwareAddr asks a TAP device for its interface's MAC address
// (SIOCGIFHWADDR on the device's own descriptor, which answers from the
// namespace the device lives in).
func (d *Device) HardwareAddr() (net.HardwareAddr, error) {
	raw, err := d.File.SyscallConn()
	if err != nil {
		return nil, err
	}
	// struct ifreq: the name, then a struct sockaddr (a family, then the
	// address). unix.Ifreq has no accessor for it, hence the raw ioctl.
	var req [unix.IFNAMSIZ + 24]byte
	copy(req[:unix.IFNAMSIZ-1], d.Name)
	var errno unix.Errno
	if err := raw.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(unix.SIOCGIFHWADDR), uintptr(unsafe.Pointer(&req[0])))
	}); err != nil {
		return nil, err
	}
	if errno != 0 {
		return nil, fmt.Errorf("tun: SIOCGIFHWADDR on %s: %w", d.Name, errno)
	}
	return net.HardwareAddr(append([]byte(nil), req[unix.IFNAMSIZ+2:unix.IFNAMSIZ+8]...)), nil
}
