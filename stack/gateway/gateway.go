// Package gateway makes a stack a sandbox's gateway to the host, with
// slirp4netns-compatible addressing: in a /24 (default 10.0.2.0/24) the
// sandbox is .100, the gateway .2 (it reaches the host, and the host's
// loopback unless disabled) and the DNS relay .3; IPv6 likewise in a /64
// (default fd00::/64: fd00::100, fd00::2, fd00::3).
//
// It composes the egress relay (TCP and UDP to host sockets), the DNS relay
// and the ICMP echo relay, and decides where each destination goes.
package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/dnsrelay"
	"github.com/tunstack/tunstack/stack/echo"
	"github.com/tunstack/tunstack/stack/egress"
	"github.com/tunstack/tunstack/stack/relay"
)

// Default networks, as slirp4netns uses them.
var (
	DefaultCIDR  = netip.MustParsePrefix("10.0.2.0/24")
	DefaultCIDR6 = netip.MustParsePrefix("fd00::/64")
)

// Addresses are the well-known addresses of one family in a sandbox network.
type Addresses struct {
	Network netip.Prefix
	Sandbox netip.Addr // .100
	Gateway netip.Addr // .2
	DNS     netip.Addr // .3
}

// AddressesFor derives the sandbox, gateway and DNS addresses of p. The
// prefix must leave room for host number 100 (at most /25 for IPv4).
func AddressesFor(p netip.Prefix) (Addresses, error) {
	p = p.Masked()
	maxBits := 25
	if p.Addr().Is6() {
		maxBits = 119
	}
	if p.Bits() > maxBits {
		return Addresses{}, fmt.Errorf("gateway: network %s is too small (need at least /%d)", p, maxBits)
	}
	sandbox := nth(p, 100)
	if p.Addr().Is6() {
		sandbox = nth(p, 0x100) // fd00::100, as slirp4netns writes it
	}
	return Addresses{Network: p, Sandbox: sandbox, Gateway: nth(p, 2), DNS: nth(p, 3)}, nil
}

// nth returns host number n of p.
func nth(p netip.Prefix, n uint16) netip.Addr {
	b := p.Addr().AsSlice()
	b[len(b)-1] += byte(n)
	b[len(b)-2] += byte(n >> 8)
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Config configures a gateway.
type Config struct {
	// V4 and V6 are the sandbox networks; a zero Network disables that
	// family.
	V4, V6 Addresses
	// DisableHostLoopback refuses connections to the gateway address
	// instead of carrying them to the host's loopback.
	DisableHostLoopback bool
	// DNSUpstreams are the resolvers the DNS relay uses.
	DNSUpstreams []netip.AddrPort
	// Dialer reaches the host; nil means a *net.Dialer.
	Dialer egress.Dialer
	// Logger receives diagnostics; nil uses the stack's.
	Logger *slog.Logger
	// Limits bound what the sandbox can make the gateway hold.
	Limits Limits
}

// Limits bound a gateway's resources. Zero fields mean no cap (the
// command line sets its documented defaults). Each cap counts what it
// turned away; Gateway.Stats shows them.
type Limits struct {
	// TCPFlows caps concurrent TCP connections to the host; a SYN past it
	// gets ICMP administratively prohibited (EHOSTUNREACH in the sandbox).
	TCPFlows int
	// UDPFlows caps concurrent UDP flows; datagrams of new flows past it
	// are dropped.
	UDPFlows int
	// PingFlows caps concurrent ping sessions; requests of new sessions
	// past it are dropped.
	PingFlows int
	// DNSQueries caps DNS queries in flight (UDP and TCP) and, separately,
	// TCP connections to the DNS relay; past it UDP queries are dropped,
	// TCP queries answered SERVFAIL and new TCP connections closed.
	DNSQueries int
	// HostFDs is the budget of host file descriptors all relays may hold
	// together, so that a reserve stays for the control socket and
	// forwards. A flow that finds it spent is dropped without an answer
	// (a lost SYN or datagram: the sandbox retries); it is never
	// reported as refused.
	HostFDs int
	// UDPIdleTimeout and PingIdleTimeout close idle flows (defaults 60 s
	// and 30 s).
	UDPIdleTimeout, PingIdleTimeout time.Duration
}

// Gateway is a running gateway. Close stops its services (not the stack).
type Gateway struct {
	cfg    Config
	egress *egress.Egress
	dns    *dnsrelay.Relay
	echo   *echo.Relay
	// fds is the host descriptor budget the three relays share.
	fds *relay.Limit
}

// gatewayTimeWait is how long the gateway's side of a terminated sandbox
// connection stays in TIME_WAIT. gVisor hands a SYN that meets a TIME_WAIT
// endpoint to a listener only, never to the forwarder that terminates the
// sandbox's connections, so with its 60 s default a sandbox reusing a port
// within a minute of a connection the gateway closed first had its SYNs
// swallowed for 63 s (six retransmissions); in-process clients, which pick
// ports at random, met that about once in a few hundred connections. The
// link to the sandbox neither duplicates nor reorders much, which is what
// TIME_WAIT guards against, and the sandbox's own kernel keeps its TIME_WAIT.
const gatewayTimeWait = 0

func shortTimeWait(s *stack.Stack) error {
	tw := tcpip.TCPTimeWaitTimeoutOption(gatewayTimeWait)
	if err := s.GVisor().SetTransportProtocolOption(tcp.ProtocolNumber, &tw); err != nil {
		return fmt.Errorf("gateway: set TCP TIME_WAIT timeout: %s", err)
	}
	return nil
}

// Start assigns the gateway and DNS addresses to NIC nic, routes all
// traffic through it, starts the relays, and enables the NIC. Create the
// NIC with stack.NICConfig.Disabled: the relays' transport handlers must be
// installed before the first packet arrives.
func Start(s *stack.Stack, nic stack.NICID, cfg Config) (*Gateway, error) {
	if cfg.Logger == nil {
		cfg.Logger = s.Logger()
	}
	if err := shortTimeWait(s); err != nil {
		return nil, err
	}
	lim := cfg.Limits
	g := &Gateway{cfg: cfg, fds: relay.NewLimit("host-fds", lim.HostFDs)}
	var dnsAddrs []netip.Addr
	for _, a := range []Addresses{cfg.V4, cfg.V6} {
		if !a.Network.IsValid() {
			continue
		}
		for _, own := range []netip.Addr{a.Gateway, a.DNS} {
			if err := s.AddAddress(nic, netip.PrefixFrom(own, a.Network.Bits())); err != nil {
				return nil, err
			}
		}
		dnsAddrs = append(dnsAddrs, a.DNS)
	}
	s.AddDefaultRoutes(nic)
	var err error
	var dialer dnsrelay.Dialer
	if cfg.Dialer != nil {
		dialer = cfg.Dialer
	}
	g.dns, err = dnsrelay.Start(dnsrelay.Config{Stack: s, Addrs: dnsAddrs, Upstreams: cfg.DNSUpstreams, Dialer: dialer, Logger: cfg.Logger,
		Queries: relay.NewLimit("dns-queries", lim.DNSQueries), TCPConns: relay.NewLimit("dns-tcp-conns", lim.DNSQueries), FDs: g.fds})
	if err != nil {
		return nil, err
	}
	g.egress, err = egress.Start(egress.Config{Stack: s, Dialer: cfg.Dialer, Translate: g.translate, Logger: cfg.Logger,
		TCPFlows: relay.NewLimit("tcp-flows", lim.TCPFlows), UDPFlows: relay.NewLimit("udp-flows", lim.UDPFlows), FDs: g.fds,
		UDPIdleTimeout: lim.UDPIdleTimeout})
	if err != nil {
		g.Close()
		return nil, err
	}
	g.echo, err = echo.Start(echo.Config{Stack: s, Translate: g.translatePing, Logger: cfg.Logger,
		Flows: relay.NewLimit("ping-flows", lim.PingFlows), FDs: g.fds, IdleTimeout: lim.PingIdleTimeout})
	if err != nil {
		g.Close()
		return nil, err
	}
	if err := s.EnableNIC(nic); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// DNSRelay returns the gateway's DNS relay.
func (g *Gateway) DNSRelay() *dnsrelay.Relay { return g.dns }

// Stats returns the state of every cap: TCP, UDP and ping flows, DNS
// queries and TCP connections, and the host descriptor budget.
func (g *Gateway) Stats() []relay.LimitStat {
	var out []relay.LimitStat
	if g.egress != nil {
		out = append(out, g.egress.Stats()...)
	}
	if g.echo != nil {
		out = append(out, g.echo.Stats()...)
	}
	if g.dns != nil {
		out = append(out, g.dns.Stats()...)
	}
	return append(out, g.fds.Stat())
}

// Close stops the relays.
func (g *Gateway) Close() error {
	var errs []error
	if g.echo != nil {
		errs = append(errs, g.echo.Close())
	}
	if g.egress != nil {
		errs = append(errs, g.egress.Close())
	}
	if g.dns != nil {
		errs = append(errs, g.dns.Close())
	}
	return errors.Join(errs...)
}

// translate decides where a sandbox flow to dst goes on the host.
func (g *Gateway) translate(_ string, dst netip.AddrPort) (netip.AddrPort, egress.Verdict) {
	a, v := g.route(dst.Addr())
	return netip.AddrPortFrom(a, dst.Port()), v
}

func (g *Gateway) translatePing(dst netip.Addr) (netip.Addr, bool) {
	a, v := g.route(dst)
	return a, v == egress.Dial
}

func (g *Gateway) route(dst netip.Addr) (netip.Addr, egress.Verdict) {
	for _, n := range []Addresses{g.cfg.V4, g.cfg.V6} {
		if !n.Network.IsValid() || !n.Network.Contains(dst) {
			continue
		}
		switch dst {
		case n.Gateway:
			if g.cfg.DisableHostLoopback {
				return netip.Addr{}, egress.Refuse
			}
			if dst.Is4() {
				return netip.AddrFrom4([4]byte{127, 0, 0, 1}), egress.Dial
			}
			return netip.IPv6Loopback(), egress.Dial
		case n.DNS:
			// Only port 53 is served (by the DNS relay's own sockets).
			return netip.Addr{}, egress.Refuse
		}
		// Nothing else lives on the sandbox network.
		return netip.Addr{}, egress.Unreachable
	}
	switch {
	case dst.IsLoopback(), dst.IsUnspecified():
		return netip.Addr{}, egress.Refuse
	case dst.IsMulticast(), dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Addr{}, egress.Drop
	}
	return dst, egress.Dial
}
