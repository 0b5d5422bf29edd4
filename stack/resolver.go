package stack

import (
	"context"
	"net"
	"net/netip"
)

// Resolver returns a net.Resolver whose DNS queries go to server (usually
// port 53) through the stack, over UDP and, for truncated answers, TCP,
// whatever server the system's resolv.conf names.
//
// It is Go's own resolver (PreferGo), so it still answers from /etc/hosts
// first, as net.DefaultResolver does. Use it directly
// (r.LookupNetIP(ctx, "ip4", name)) or as Dialer.Resolver so DialContext
// accepts host names.
func (s *Stack) Resolver(server netip.AddrPort) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			// network is "udp" or "tcp"; the address argument is the
			// system's server, which is not reachable from here.
			return s.DialContext(ctx, network, server.String())
		},
	}
}
