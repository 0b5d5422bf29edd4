package tun

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/songgao/water"
	"golang.org/x/sys/unix"
)

// OffloadMode selects how Open sets up the device.
type OffloadMode int

const (
	// OffloadAuto tries the virtio-net header path and falls back to plain.
	OffloadAuto OffloadMode = iota
	// OffloadOn requires the virtio-net header path.
	OffloadOn
	// OffloadOff uses the plain path only.
	OffloadOff
)

// String returns "auto", "on" or "off".
func (m OffloadMode) String() string {
	switch m {
	case OffloadOn:
		return "on"
	case OffloadOff:
		return "off"
	}
	return "auto"
}

// ParseOffloadMode parses "auto", "on" or "off".
func ParseOffloadMode(s string) (OffloadMode, error) {
	switch s {
	case "auto", "":
		return OffloadAuto, nil
	case "on":
		return OffloadOn, nil
	case "off":
		return OffloadOff, nil
	}
	return 0, fmt.Errorf("tun: offload mode %q: want auto, on or off", s)
}

// Config describes a TUN device to create.
type Config struct {
	// Name is the interface name; empty lets the kernel choose (tunN).
	Name string
	// Offload selects the virtio-net header path (see OffloadMode).
	Offload OffloadMode
	// Queues is the number of queues (IFF_MULTI_QUEUE when above 1);
	// each gets its own reader. 0 means 1.
	Queues int
	// TAP opens an Ethernet (IFF_TAP) device instead of an IP one (see
	// tap_linux.go). An existing persistent device of that name is
	// attached to.
	TAP bool
}

// Device is an open TUN device.
type Device struct {
	// File is the device's queue file descriptor.
	File *os.File
	// Name is the interface name the kernel assigned.
	Name string
	// Offload reports whether the device carries virtio-net headers with
	// checksum and TSO offload enabled.
	Offload bool
	// Queues are the further queues of a multiqueue device
	// (IFF_MULTI_QUEUE); File is the first.
	Queues []*os.File
	// TAP reports an Ethernet (IFF_TAP) device: frames carry an Ethernet
	// header, which the endpoint's Link answers and builds.
	TAP bool
}

// Close closes the device's file descriptors. The interface disappears
// once no descriptor refers to it (devices are never made persistent).
func (d *Device) Close() error {
	var errs []error
	for _, f := range d.Files() {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// Files returns every queue's file, File first.
func (d *Device) Files() []*os.File { return append([]*os.File{d.File}, d.Queues...) }

// Open creates a TUN device (IFF_TUN|IFF_NO_PI), or with cfg.TAP an
// Ethernet TAP device (see tap_linux.go), in the calling process's network
// namespace, with cfg.Queues queues.
func Open(cfg Config) (*Device, error) {
	n := max(cfg.Queues, 1)
	d, err := openFirst(cfg, n > 1)
	if err != nil {
		return nil, err
	}
	for i := 1; i < n; i++ {
		q, err := openQueue(d.Name, d.TAP, d.Offload, true)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("tun: queue %d of %s: %w", i, d.Name, err)
		}
		d.Queues = append(d.Queues, q.File)
	}
	return d, nil
}

// openFirst opens the first queue, choosing the path as cfg.Offload says.
func openFirst(cfg Config, multi bool) (*Device, error) {
	if cfg.Offload != OffloadOff {
		d, err := openOffload(cfg.Name, cfg.TAP, multi)
		if err == nil {
			return d, nil
		}
		if cfg.Offload == OffloadOn || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return nil, explain(err)
		}
	}
	d, err := openPlain(cfg.Name, cfg.TAP, multi)
	if err != nil {
		return nil, explain(err)
	}
	return d, nil
}

// openQueue opens one more queue of an existing multiqueue device.
func openQueue(name string, tap, offload, multi bool) (*Device, error) {
	if offload {
		return openOffload(name, tap, multi)
	}
	return openPlain(name, tap, multi)
}

// openPlain opens a queue without the virtio-net header, through water.
func openPlain(name string, tap, multi bool) (*Device, error) {
	typ := water.DeviceType(water.TUN)
	if tap {
		typ = water.TAP
	}
	ifc, err := water.New(water.Config{
		DeviceType:             typ,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name, MultiQueue: multi},
	})
	if err != nil {
		return nil, err
	}
	f, ok := ifc.ReadWriteCloser.(*os.File)
	if !ok {
		ifc.Close()
		return nil, errors.New("tun: water returned a device that is not a file")
	}
	return &Device{File: f, Name: ifc.Name(), TAP: tap}, nil
}

// explain turns the common failures of opening /dev/net/tun into errors that
// name the fix.
func explain(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "no such file"):
		return fmt.Errorf("tun: /dev/net/tun does not exist (load the tun module: modprobe tun): %w", err)
	case errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) || strings.Contains(err.Error(), "permission denied"):
		return fmt.Errorf("tun: permission denied on /dev/net/tun (run as root, or make it usable: chmod 0666 /dev/net/tun): %w", err)
	}
	return fmt.Errorf("tun: %w", err)
}

// openOffload opens a TUN (or, with tap, a TAP) queue with the virtio-net
// header, checksum offload and TSO.
func openOffload(name string, tap, multi bool) (*Device, error) {
	req, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("interface name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if tap {
		flags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR
	}
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
		if name != "" {
			return nil, fmt.Errorf("%s on %s: %w", what, name, err)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, req); err != nil {
		return fail("TUNSETIFF", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, virtioNetHdrLen); err != nil {
		return fail("TUNSETVNETHDRSZ", err)
	}
	// No USO: gVisor's UDP would not split the kernel's UDP super-packets.
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6); err != nil {
		return fail("TUNSETOFFLOAD", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail("set non-blocking", err)
	}
	ifname := req.Name()
	return &Device{File: os.NewFile(uintptr(fd), "/dev/net/tun:"+ifname), Name: ifname, Offload: true, TAP: tap}, nil
}
