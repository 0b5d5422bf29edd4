package sandbox

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/tun"
)

// Limits and defaults of a DeviceConfig.
const (
	// MinMTU is IPv6's minimum link MTU.
	MinMTU = 1280
	// MaxMTU is the largest MTU a TUN device takes.
	MaxMTU = 65520
	// MaxQueues bounds the TUN queues (one reader goroutine each).
	MaxQueues = 16
	// DefaultName is the device's name when DeviceConfig.Name is empty.
	DefaultName = "tun0"
	// DefaultTxQueueLen is the transmit queue length when
	// DeviceConfig.TxQueueLen is zero: a short queue overflows at small
	// MTUs, as pasta's does at 1500.
	DefaultTxQueueLen = 10000
)

// DeviceConfig is the device a sandbox serves, the same for a new sandbox
// (Config.Device) and an existing namespace (AttachConfig.Device); the
// child configures the device from it.
type DeviceConfig struct {
	// Name is the interface name inside (default DefaultName).
	Name string
	// Offload selects the TUN path (see tun.OffloadMode).
	Offload tun.OffloadMode
	// MTU of the device (MinMTU..MaxMTU).
	MTU int
	// TxQueueLen of the device (default DefaultTxQueueLen).
	TxQueueLen int
	// Queues is the number of queues (IFF_MULTI_QUEUE above 1), each
	// read by its own goroutine (1..MaxQueues; zero means 1).
	Queues int
	// Addr4/Gateway4 and Addr6/Gateway6 configure the device and default
	// routes; zero values skip a family.
	Addr4    netip.Prefix
	Gateway4 netip.Addr
	Addr6    netip.Prefix
	Gateway6 netip.Addr
	// TAP opens (or creates) an Ethernet TAP device named Name instead of
	// a TUN device, as slirp4netns does (Attach only).
	TAP bool
	// Unconfigured leaves lo, the device's addresses, routes and MTU
	// alone: its creator configures it, as rootlesskit does (Attach only).
	Unconfigured bool
	// MAC, if set, is the device's hardware address (TAP only).
	MAC string
}

// withDefaults fills in the zero Name, TxQueueLen and Queues.
func (d DeviceConfig) withDefaults() DeviceConfig {
	if d.Name == "" {
		d.Name = DefaultName
	}
	if d.TxQueueLen == 0 {
		d.TxQueueLen = DefaultTxQueueLen
	}
	if d.Queues == 0 {
		d.Queues = 1
	}
	return d
}

// Validate checks the configuration as given (Start and Attach first fill
// in the defaults of zero fields; a caller checking user input calls it
// on that input, so that an explicit zero is refused). The error names the
// field and its value.
func (d DeviceConfig) Validate() error {
	switch {
	case d.MTU < MinMTU || d.MTU > MaxMTU:
		return fmt.Errorf("MTU %d: must be between %d and %d", d.MTU, MinMTU, MaxMTU)
	case d.Queues < 1 || d.Queues > MaxQueues:
		return fmt.Errorf("queues %d: must be between 1 and %d", d.Queues, MaxQueues)
	case d.TxQueueLen < 0:
		return fmt.Errorf("txqueuelen %d: must not be negative", d.TxQueueLen)
	case d.Name != "" && len(d.Name) >= unix.IFNAMSIZ:
		return fmt.Errorf("device name %q: longer than %d bytes", d.Name, unix.IFNAMSIZ-1)
	case d.Addr4.IsValid() && !d.Addr4.Addr().Is4():
		return fmt.Errorf("IPv4 address %s: not IPv4", d.Addr4)
	case d.Addr6.IsValid() && (!d.Addr6.Addr().Is6() || d.Addr6.Addr().Is4In6()):
		return fmt.Errorf("IPv6 address %s: not IPv6", d.Addr6)
	case d.MAC != "" && !d.TAP:
		return fmt.Errorf("MAC address %q: only a TAP device has one", d.MAC)
	}
	if d.MAC != "" {
		if _, err := net.ParseMAC(d.MAC); err != nil {
			return fmt.Errorf("MAC address %q: %w", d.MAC, err)
		}
	}
	return nil
}

// prepared is the configuration the child gets: defaults filled in, then
// validated.
func (d DeviceConfig) prepared() (DeviceConfig, error) {
	d = d.withDefaults()
	if err := d.Validate(); err != nil {
		return d, fmt.Errorf("sandbox: device %s: %w", d.Name, err)
	}
	return d, nil
}

// tunConfig is what tun.Open needs of the configuration.
func (d DeviceConfig) tunConfig() tun.Config {
	return tun.Config{Name: d.Name, Offload: d.Offload, Queues: d.Queues, TAP: d.TAP}
}
