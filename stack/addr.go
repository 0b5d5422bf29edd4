package stack

import (
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Addr converts a netip.Addr to a gVisor address (IPv4-mapped IPv6
// addresses become IPv4).
func Addr(a netip.Addr) tcpip.Address {
	a = a.Unmap()
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// FromAddr converts a gVisor address to a netip.Addr (invalid if empty).
func FromAddr(a tcpip.Address) netip.Addr {
	switch a.Len() {
	case 4:
		return netip.AddrFrom4(a.As4())
	case 16:
		return netip.AddrFrom16(a.As16())
	}
	return netip.Addr{}
}

// FullAddr converts an address and port to a gVisor full address.
func FullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{Addr: Addr(ap.Addr()), Port: ap.Port()}
}

// FromFullAddr converts a gVisor full address to a netip.AddrPort.
func FromFullAddr(a tcpip.FullAddress) netip.AddrPort {
	return netip.AddrPortFrom(FromAddr(a.Addr), a.Port)
}

// Subnet converts a prefix to a gVisor subnet.
func Subnet(p netip.Prefix) (tcpip.Subnet, error) {
	p = p.Masked()
	sub, err := tcpip.NewSubnet(Addr(p.Addr()), tcpip.MaskFromBytes(maskBytes(p)))
	if err != nil {
		return tcpip.Subnet{}, fmt.Errorf("stack: subnet %s: %v", p, err)
	}
	return sub, nil
}

func maskBytes(p netip.Prefix) []byte {
	n := 4
	if p.Addr().Is6() && !p.Addr().Is4In6() {
		n = 16
	}
	b := make([]byte, n)
	bits := p.Bits()
	for i := range b {
		switch {
		case bits >= 8:
			b[i] = 0xff
			bits -= 8
		case bits > 0:
			b[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return b
}
