package tun

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinkConfig is how Configure sets up an interface: what `ip link set
// NAME mtu MTU up` and `ip addr add ADDR dev NAME` would do.
type LinkConfig struct {
	// Addresses are assigned to the interface (the kernel's side of the
	// link; the stack's own addresses go on its NIC). IPv6 addresses skip
	// duplicate address detection, so they are usable at once.
	Addresses []netip.Prefix
	// MTU, if positive, is set on the interface; 0 keeps the kernel's
	// (1500 for a new TUN).
	MTU int
}

// MTU returns the MTU of the interface called name in the calling
// thread's network namespace: the value NewEndpoint's mtu must match.
func MTU(name string) (int, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("tun: MTU of %q: %w", name, err)
	}
	return link.Attrs().MTU, nil
}

// Configure sets the MTU of the interface called name, adds the
// addresses and sets it up, in the calling thread's network namespace.
func Configure(name string, lc LinkConfig) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tun: configure %q: %w", name, err)
	}
	if lc.MTU > 0 {
		if err := netlink.LinkSetMTU(link, lc.MTU); err != nil {
			return fmt.Errorf("tun: set %s mtu %d: %w", name, lc.MTU, err)
		}
	}
	for _, p := range lc.Addresses {
		if !p.IsValid() {
			return fmt.Errorf("tun: configure %s: invalid address %v", name, p)
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(link, a); err != nil {
			return fmt.Errorf("tun: add address %s to %s: %w", p, name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tun: set %s up: %w", name, err)
	}
	return nil
}

// OpenEndpoint is the common case in one call, for a process inside the
// network namespace the device belongs to (and allowed to configure it,
// CAP_NET_ADMIN): it opens a TUN device (Open), configures it (Configure)
// and wraps it as a stack NIC (NewEndpoint) at the interface's MTU. Pass
// the result as stack.NICConfig.Endpoint.
func OpenEndpoint(cfg Config, lc LinkConfig, log *slog.Logger) (*Endpoint, error) {
	dev, err := Open(cfg)
	if err != nil {
		return nil, err
	}
	ep, err := configureAndWrap(dev, lc, log)
	if err != nil {
		dev.Close()
		return nil, err
	}
	return ep, nil
}

func configureAndWrap(dev *Device, lc LinkConfig, log *slog.Logger) (*Endpoint, error) {
	if err := Configure(dev.Name, lc); err != nil {
		return nil, err
	}
	mtu, err := MTU(dev.Name)
	if err != nil {
		return nil, err
	}
	return NewEndpoint(dev, uint32(mtu), log)
}
