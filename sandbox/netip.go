package sandbox

import (
	"net"
	"net/netip"
)

type (
	netipPrefix = netip.Prefix
	netipAddr   = netip.Addr
)

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
