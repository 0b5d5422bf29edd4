package slirp4netns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// OutboundDialer dials the host's side of sandbox connections from the
// addresses --outbound-addr and --outbound-addr6 name: an address, or an
// interface whose first address of that family is used, as slirp4netns
// resolves them. Empty names leave a family's source to the kernel.
type OutboundDialer struct {
	v4, v6 netip.Addr
	d      net.Dialer
}

// NewOutboundDialer resolves the two options.
func NewOutboundDialer(addr4, addr6 string) (*OutboundDialer, error) {
	var o OutboundDialer
	var err error
	if o.v4, err = outboundAddr("--outbound-addr", addr4, false); err != nil {
		return nil, err
	}
	if o.v6, err = outboundAddr("--outbound-addr6", addr6, true); err != nil {
		return nil, err
	}
	return &o, nil
}

func outboundAddr(flag, s string, v6 bool) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Is6() != v6 || a.Is4In6() {
			return netip.Addr{}, fmt.Errorf("%s %q: wrong address family", flag, s)
		}
		return a, nil
	}
	ifc, err := net.InterfaceByName(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s %q: neither an address nor an interface: %w", flag, s, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s %q: %w", flag, s, err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is6() == v6 && !p.Addr().IsLinkLocalUnicast() {
			return p.Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s %q: the interface has no address of that family", flag, s)
}

// DialContext implements egress.Dialer: it binds to the family's outbound
// address, if one is set, and connects.
func (o *OutboundDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return o.d.DialContext(ctx, network, address)
	}
	src := o.v4
	if ap.Addr().Unmap().Is6() {
		src = o.v6
	}
	if !src.IsValid() {
		return o.d.DialContext(ctx, network, address)
	}
	d := o.d
	switch network {
	case "tcp", "tcp4", "tcp6":
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	case "udp", "udp4", "udp6":
		d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	return d.DialContext(ctx, network, address)
}
