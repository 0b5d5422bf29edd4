package stack

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/qdisc/fifo"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// NICID identifies a NIC within a Stack.
type NICID = tcpip.NICID

// Options configure a Stack. The zero value is usable.
type Options struct {
	// Logger receives the stack's logs; nil discards them.
	Logger *slog.Logger
	// TCP tunes the TCP protocol; zero fields take the defaults.
	TCP TCPOptions
	// Forwarding enables IP forwarding between NICs.
	Forwarding bool
	// NoLocalDelivery stops the stack from delivering packets it sends
	// to its own addresses internally. A stack with a promiscuous NIC
	// must set it: otherwise every source address counts as its own, and
	// all inbound packets are dropped as spoofed.
	NoLocalDelivery bool
}

// TCPOptions tune TCP. Zero fields keep the defaults noted on each.
type TCPOptions struct {
	// ReceiveBufferMax is the largest receive buffer auto-tuning may
	// reach (default 8 MiB).
	ReceiveBufferMax int
	// SendBufferMax is the largest send buffer (default 6 MiB).
	SendBufferMax int
	// CongestionControl is "reno" or "cubic" (default "reno").
	CongestionControl string
}

// Defaults chosen by measurement on the TUN egress path
// (docs/PERFORMANCE.md): 8 MiB / 6 MiB maxima gave the best and steadiest
// medians, and larger windows matter on WAN round-trip times. Cubic and reno
// were within noise on loopback; reno avoids gVisor's cubic integer overflow
// (google/gvisor#11632), as Tailscale decided too.
const (
	defaultRcvBufMax = 8 << 20
	defaultSndBufMax = 6 << 20
	defaultCC        = "reno"
)

// Stack is a userspace TCP/IP stack.
type Stack struct {
	gs  *gstack.Stack
	log *slog.Logger
	// backlogs maps listening endpoints to their listen backlog.
	backlogs sync.Map

	mu       sync.Mutex // guards nextID, closed, noPrefix
	nextID   NICID
	closed   bool
	noPrefix map[NICID]bool // NICs created with NoPrefixRoute
}

// New creates a stack with IPv4, IPv6, TCP, UDP and ICMP.
func New(opts Options) (*Stack, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gs := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		HandleLocal:        !opts.NoLocalDelivery,
	})
	s := &Stack{gs: gs, log: log, nextID: 1}
	if err := s.tune(opts); err != nil {
		gs.Destroy()
		return nil, err
	}
	return s, nil
}

func (s *Stack) tune(opts Options) error {
	t := opts.TCP
	rcv, snd, cc := t.ReceiveBufferMax, t.SendBufferMax, t.CongestionControl
	if rcv == 0 {
		rcv = defaultRcvBufMax
	}
	if snd == 0 {
		snd = defaultSndBufMax
	}
	if cc == "" {
		cc = defaultCC
	}
	sack := tcpip.TCPSACKEnabled(true)
	rcvRange := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultReceiveBufferSize, Max: rcv}
	sndRange := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultSendBufferSize, Max: snd}
	ccOpt := tcpip.CongestionControlOption(cc)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	for _, o := range []struct {
		name string
		opt  tcpip.SettableTransportProtocolOption
	}{
		{"SACK", &sack},
		{"receive buffer range", &rcvRange},
		{"send buffer range", &sndRange},
		{"congestion control " + cc, &ccOpt},
		{"moderate receive buffer", &moderate},
	} {
		if err := s.gs.SetTransportProtocolOption(tcp.ProtocolNumber, o.opt); err != nil {
			return fmt.Errorf("stack: set TCP %s: %s", o.name, err)
		}
	}
	ttl := tcpip.DefaultTTLOption(64)
	s.gs.SetNetworkProtocolOption(ipv4.ProtocolNumber, &ttl)
	s.gs.SetNetworkProtocolOption(ipv6.ProtocolNumber, &ttl)
	if opts.Forwarding {
		for _, p := range []tcpip.NetworkProtocolNumber{ipv4.ProtocolNumber, ipv6.ProtocolNumber} {
			if err := s.gs.SetForwardingDefaultAndAllNICs(p, true); err != nil {
				return fmt.Errorf("stack: enable forwarding: %s", err)
			}
		}
	}
	return nil
}

// GVisor returns the underlying gVisor stack, for the packages that
// program it directly: netfilter (its iptables hooks), views (snapshots of
// endpoints, NICs and routes), egress and echo (transport forwarders and
// protocol handlers), and dnsrelay and forward (gonet endpoints on it).
func (s *Stack) GVisor() *gstack.Stack { return s.gs }

// Backlog returns the backlog a listening endpoint was given through
// Socket.Listen (ss's Send-Q for a listener); ok is false for endpoints
// that were not.
func (s *Stack) Backlog(ep tcpip.Endpoint) (int, bool) {
	v, ok := s.backlogs.Load(ep)
	if !ok {
		return 0, false
	}
	return v.(int), true
}

// Logger returns the stack's logger.
func (s *Stack) Logger() *slog.Logger { return s.log }

// NICConfig describes a NIC to add.
type NICConfig struct {
	// Name is the interface name shown in views and matched by netfilter
	// (-i/-o).
	Name string
	// Endpoint is the link endpoint (a TUN, an in-memory link, ...). The
	// stack owns it from now on.
	Endpoint gstack.LinkEndpoint
	// Addresses are assigned to the NIC.
	Addresses []netip.Prefix
	// Promiscuous makes the NIC accept packets for any destination, so the
	// transport forwarders see connections to every address.
	Promiscuous bool
	// Spoofing lets endpoints send from addresses the NIC does not own.
	Spoofing bool
	// NoPrefixRoute stops AddNIC and AddAddress from adding the on-link
	// route for each address's prefix on this NIC (like ip-address(8)'s
	// noprefixroute): packets to the rest of the prefix then need an
	// explicit AddRoute.
	NoPrefixRoute bool
	// Disabled creates the NIC without attaching its endpoint, so no
	// packet arrives until EnableNIC. Services that install transport
	// handlers (the gateway) need this: gVisor reads its handler table
	// without a lock, so handlers must be in place before packets flow.
	Disabled bool
	// WriteQueue > 0 hands outgoing packets to one writer goroutine
	// through a queue of that many packets (gVisor's FIFO queueing
	// discipline; a full queue drops) instead of writing them in the
	// sending goroutine. Set it for links whose writes are syscalls (TUN,
	// TAP): gVisor writes some packets (a SYN-ACK of the TCP forwarder, the
	// ACKs and data its processor sends) while holding the endpoint's lock
	// as a non-user, and its TCP processor re-queues an endpoint whose lock
	// it cannot take without yielding. With GOMAXPROCS 1, a writer that
	// loses its P during the syscall then waits until the spinning
	// processor is preempted, about 10 ms (docs/PERFORMANCE.md, "What
	// stalls crr p99 with one P").
	WriteQueue int
}

// AddNIC adds a NIC and returns its ID. Like ip-address(8), each address
// also makes its prefix reachable through the NIC: 198.18.0.1/24 adds an
// on-link route to 198.18.0.0/24 (not for /32 and /128 addresses), unless
// cfg.NoPrefixRoute is set. Routes elsewhere (a default route) are the
// caller's: AddRoute, AddDefaultRoutes.
func (s *Stack) AddNIC(cfg NICConfig) (NICID, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, errors.New("stack: closed")
	}
	id := s.nextID
	s.nextID++
	if cfg.NoPrefixRoute {
		if s.noPrefix == nil {
			s.noPrefix = map[NICID]bool{}
		}
		s.noPrefix[id] = true
	}
	s.mu.Unlock()
	opts := gstack.NICOptions{Name: cfg.Name, Disabled: cfg.Disabled}
	if cfg.WriteQueue > 0 {
		opts.QDisc = fifo.New(cfg.Endpoint, 1, cfg.WriteQueue)
	}
	if err := s.gs.CreateNICWithOptions(id, cfg.Endpoint, opts); err != nil {
		return 0, fmt.Errorf("stack: create NIC %q: %s", cfg.Name, err)
	}
	for _, p := range cfg.Addresses {
		if err := s.AddAddress(id, p); err != nil {
			s.gs.RemoveNIC(id)
			return 0, err
		}
	}
	if cfg.Promiscuous {
		if err := s.gs.SetPromiscuousMode(id, true); err != nil {
			return 0, fmt.Errorf("stack: NIC %q promiscuous: %s", cfg.Name, err)
		}
	}
	if cfg.Spoofing {
		if err := s.gs.SetSpoofing(id, true); err != nil {
			return 0, fmt.Errorf("stack: NIC %q spoofing: %s", cfg.Name, err)
		}
	}
	return id, nil
}

// EnableNIC attaches a NIC created with Disabled, so packets start to flow.
func (s *Stack) EnableNIC(id NICID) error {
	if err := s.gs.EnableNIC(id); err != nil {
		return fmt.Errorf("stack: enable NIC %d: %s", id, err)
	}
	return nil
}

// AddAddress assigns p to the NIC and, as ip-address(8) does, adds the
// on-link route to p's prefix through it, unless the NIC was created with
// NoPrefixRoute or p is a single address (/32, /128).
func (s *Stack) AddAddress(id NICID, p netip.Prefix) error {
	proto := ipv4.ProtocolNumber
	if p.Addr().Is6() && !p.Addr().Is4In6() {
		proto = ipv6.ProtocolNumber
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          proto,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: Addr(p.Addr()), PrefixLen: p.Bits()},
	}
	if err := s.gs.AddProtocolAddress(id, pa, gstack.AddressProperties{}); err != nil {
		return fmt.Errorf("stack: add address %s to NIC %d: %s", p, id, err)
	}
	s.mu.Lock()
	noPrefix := s.noPrefix[id]
	s.mu.Unlock()
	if noPrefix || p.IsSingleIP() {
		return nil
	}
	return s.AddRoute(p.Masked(), netip.Addr{}, id)
}

// AddRoute adds a route for dst through NIC id (via gw if valid). Adding a
// route that exists already does nothing.
func (s *Stack) AddRoute(dst netip.Prefix, gw netip.Addr, id NICID) error {
	sub, err := Subnet(dst)
	if err != nil {
		return err
	}
	r := tcpip.Route{Destination: sub, NIC: id}
	if gw.IsValid() {
		r.Gateway = Addr(gw)
	}
	s.addRoute(r)
	return nil
}

// AddDefaultRoutes routes all IPv4 and IPv6 destinations through NIC id.
func (s *Stack) AddDefaultRoutes(id NICID) {
	s.addRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: id})
	s.addRoute(tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: id})
}

// addRoute adds r unless an equal route exists, so the on-link routes
// AddNIC adds and the same routes added explicitly do not show twice.
func (s *Stack) addRoute(r tcpip.Route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.gs.GetRouteTable() {
		if x.Equal(r) {
			return
		}
	}
	s.gs.AddRoute(r)
}

// Close aborts every connection, stops the stack's goroutines, removes its
// NICs (closing their link endpoints) and waits until all of that is done.
// It is safe to call more than once.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.gs.Close()
	s.stopLinks()
	s.gs.Wait()
	return nil
}

// stopLinks detaches every NIC's link endpoint and waits for its
// goroutines, with no stack lock held. gVisor's Stack.Wait does the same
// but holds the stack's lock while it waits, and a reader that is still
// delivering a packet may need that lock (the firewall's hooks ask for the
// input interface's name; an ICMP error looks up a route): it would never
// return, nor would Close. Stopped here, a reader finishes its packet and
// exits, and Stack.Wait finds nothing left to wait for (a second
// Attach(nil) is a no-op).
func (s *Stack) stopLinks() {
	var links []gstack.NetworkLinkEndpoint
	for id := range s.gs.NICInfo() {
		if n, err := s.gs.GetNICByID(id); err == nil {
			links = append(links, n.NetworkLinkEndpoint)
		}
	}
	for _, l := range links {
		l.Attach(nil)
	}
	for _, l := range links {
		l.Wait()
	}
}
