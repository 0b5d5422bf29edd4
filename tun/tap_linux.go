package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"unsafe"

	"github.com/songgao/water"
	"golang.org/x/sys/unix"
)

// openTAP opens an Ethernet (IFF_TAP) device with cfg's queues, with the
// virtio-net header and TSO as cfg.Offload says, like Open does for TUN.
func openTAP(cfg Config) (*Device, error) {
	n := max(cfg.Queues, 1)
	d, err := openTAPQueue(cfg.Name, cfg.Offload, n > 1)
	if err != nil {
		return nil, err
	}
	mode := OffloadOff
	if d.Offload {
		mode = OffloadOn
	}
	for i := 1; i < n; i++ {
		q, err := openTAPQueue(d.Name, mode, true)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("tun: queue %d of %s: %w", i, d.Name, err)
		}
		d.Queues = append(d.Queues, q.File)
	}
	return d, nil
}

func openTAPQueue(name string, mode OffloadMode, multi bool) (*Device, error) {
	if mode != OffloadOff {
		d, err := openTAPOffload(name, multi)
		if err == nil {
			return d, nil
		}
		if mode == OffloadOn || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return nil, explain(err)
		}
	}
	ifc, err := water.New(water.Config{
		DeviceType:             water.TAP,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name, MultiQueue: multi},
	})
	if err != nil {
		return nil, explain(err)
	}
	f, ok := ifc.ReadWriteCloser.(*os.File)
	if !ok {
		ifc.Close()
		return nil, errors.New("tun: water returned a device that is not a file")
	}
	return &Device{File: f, Name: ifc.Name(), TAP: true}, nil
}

// openTAPOffload opens a TAP queue with the virtio-net header, checksum
// offload and TSO (no USO, as for TUN).
func openTAPOffload(name string, multi bool) (*Device, error) {
	req, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("interface name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	req.SetUint16(flags)
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/dev/net/tun", Err: err}
	}
	fail := func(what string, err error) (*Device, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s on %s: %w", what, name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, req); err != nil {
		return fail("TUNSETIFF", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, virtioNetHdrLen); err != nil {
		return fail("TUNSETVNETHDRSZ", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6); err != nil {
		return fail("TUNSETOFFLOAD", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail("set non-blocking", err)
	}
	ifname := req.Name()
	return &Device{File: os.NewFile(uintptr(fd), "/dev/net/tun:"+ifname), Name: ifname, Offload: true, TAP: true}, nil
}

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
