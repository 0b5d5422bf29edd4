package egress

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/hostsock"
	"github.com/tunstack/tunstack/stack/relay"
)

// Dialer opens host connections. *net.Dialer satisfies it; tests and fuzz
// targets pass one that only reaches loopback.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Verdict is what Translate decides for a flow.
type Verdict int

const (
	// Dial redials the flow from the host to the returned address.
	Dial Verdict = iota
	// Refuse answers with a TCP RST or ICMP port unreachable.
	Refuse
	// Unreachable answers with an ICMP host unreachable.
	Unreachable
	// Drop ignores the flow (the sandbox sees a timeout).
	Drop
	// Prohibit answers ICMP administratively prohibited (what a flow past
	// a cap gets; connect(2) fails with EHOSTUNREACH at once).
	Prohibit
)

// Translator maps the destination a sandbox flow asked for to the host
// address to dial. network is "tcp" or "udp".
type Translator func(network string, dst netip.AddrPort) (netip.AddrPort, Verdict)

// Config configures egress.
type Config struct {
	// Stack is the stack whose unclaimed TCP and UDP flows are carried.
	Stack *stack.Stack
	// Dialer dials host connections; nil means TCP through a
	// hostsock.Poller that egress owns, whose connections need no
	// ordinary system call per flow, and UDP through a *net.Dialer (all
	// through the *net.Dialer where the poller cannot start).
	Dialer Dialer
	// Translate maps destinations; nil dials every destination as is.
	Translate Translator
	// Logger receives per-flow diagnostics; nil uses the stack's.
	Logger *slog.Logger
	// DialTimeout bounds a host TCP dial (default 130 s, about as long as
	// a Linux connect() retries its SYN).
	DialTimeout time.Duration
	// UDPIdleTimeout closes a UDP flow after this long without traffic
	// (default 60 s).
	UDPIdleTimeout time.Duration
	// MaxPendingDials caps concurrent host TCP dials; further SYNs are
	// dropped and the sandbox retries (default 4096).
	MaxPendingDials int
	// TCPFlows caps concurrent TCP connections, pending dials included.
	// A SYN past the cap is answered with ICMP administratively
	// prohibited, so connect(2) in the sandbox fails at once with
	// EHOSTUNREACH ("No route to host") rather than a "refused" that
	// would blame the destination. Nil: no cap.
	TCPFlows *relay.Limit
	// UDPFlows caps concurrent UDP flows; datagrams that would open a
	// flow past the cap are dropped. Nil: no cap.
	UDPFlows *relay.Limit
	// FDs is the budget of host file descriptors egress may hold (one per
	// flow), so that the process keeps a reserve for its control socket
	// and forwards. A flow that finds it spent, or whose host dial fails
	// with EMFILE or ENFILE, is dropped without an answer: the sandbox
	// sees a lost SYN or datagram and retries, as after congestion, not
	// a refusal. Nil: no budget.
	FDs *relay.Limit
}

// Egress relays flows. Create it with Start; Close stops it.
type Egress struct {
	cfg    Config
	gs     *gstack.Stack
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	// flows are the live TCP connections and UDP flows with their
	// goroutines; Close resets them all.
	flows relay.Group

	tcp *tcpRelay
	udp *udpRelay
	// poller is the default Dialer's (nil when Config.Dialer was given);
	// Close stops it once every flow has ended.
	poller *hostsock.Poller
}

// Start installs the TCP and UDP forwarders on cfg.Stack.
func Start(cfg Config) (*Egress, error) {
	if cfg.Stack == nil {
		return nil, errors.New("egress: Config.Stack is nil")
	}
	var poller *hostsock.Poller
	if cfg.Dialer == nil {
		p, err := hostsock.NewPoller()
		if err == nil {
			poller, cfg.Dialer = p, &hostDialer{tcp: p}
		} else {
			cfg.Dialer = &net.Dialer{}
		}
	}
	if cfg.Translate == nil {
		cfg.Translate = func(_ string, dst netip.AddrPort) (netip.AddrPort, Verdict) { return dst, Dial }
	}
	if cfg.Logger == nil {
		cfg.Logger = cfg.Stack.Logger()
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 130 * time.Second
	}
	if cfg.UDPIdleTimeout == 0 {
		cfg.UDPIdleTimeout = 60 * time.Second
	}
	if cfg.MaxPendingDials == 0 {
		cfg.MaxPendingDials = 4096
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Egress{
		cfg: cfg, gs: cfg.Stack.GVisor(), log: cfg.Logger,
		ctx: ctx, cancel: cancel, poller: poller,
	}
	e.tcp = newTCPRelay(e)
	e.udp = &udpRelay{e: e}
	e.gs.SetTransportProtocolHandler(tcp.ProtocolNumber, e.tcp.handle)
	e.gs.SetTransportProtocolHandler(udp.ProtocolNumber, e.udp.handlePacket)
	return e, nil
}

// Close stops accepting flows, aborts the open ones and waits for their
// goroutines.
func (e *Egress) Close() error {
	e.cancel()
	e.flows.Close()
	if e.poller != nil {
		return e.poller.Close()
	}
	return nil
}

// reject answers pkt the way a router would for verdict v.
func (e *Egress) reject(pkt *gstack.PacketBuffer, v Verdict, isTCP bool) {
	switch pkt.NetworkProtocolNumber {
	case ipv4.ProtocolNumber:
		if h, ok := e.gs.NetworkProtocolInstance(ipv4.ProtocolNumber).(gstack.RejectIPv4WithHandler); ok {
			_ = h.SendRejectionError(pkt, rejection(v, isTCP, rejections4), true)
		}
	case ipv6.ProtocolNumber:
		if h, ok := e.gs.NetworkProtocolInstance(ipv6.ProtocolNumber).(gstack.RejectIPv6WithHandler); ok {
			_ = h.SendRejectionError(pkt, rejection(v, isTCP, rejections6), true)
		}
	}
}

// rejectionSet is one family's answers: unreachable, port unreachable,
// reset, administratively prohibited.
type rejectionSet[T any] struct{ unreachable, port, reset, prohibited T }

var (
	rejections4 = rejectionSet[gstack.RejectIPv4WithICMPType]{gstack.RejectIPv4WithICMPHostUnreachable,
		gstack.RejectIPv4WithICMPPortUnreachable, gstack.RejectIPv4WithTCPReset, gstack.RejectIPv4WithICMPAdminProhibited}
	rejections6 = rejectionSet[gstack.RejectIPv6WithICMPType]{gstack.RejectIPv6WithICMPAddrUnreachable,
		gstack.RejectIPv6WithICMPPortUnreachable, gstack.RejectIPv6WithTCPReset, gstack.RejectIPv6WithICMPAdminProhibited}
)

// rejection picks the answer of one family: a refusal is an RST for TCP
// and port unreachable otherwise; a cap is administratively prohibited;
// anything else is host unreachable.
func rejection[T any](v Verdict, isTCP bool, set rejectionSet[T]) T {
	switch {
	case v == Prohibit:
		return set.prohibited
	case v != Refuse:
		return set.unreachable
	case isTCP:
		return set.reset
	}
	return set.port
}

// verdictFor turns a host dial error into what the sandbox should see.
func verdictFor(err error) Verdict {
	var op *net.OpError
	switch {
	case errors.Is(err, errConnRefused):
		return Refuse
	case errors.Is(err, errNetUnreach), errors.Is(err, errHostUnreach):
		return Unreachable
	case errors.As(err, &op) && op.Timeout(), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return Drop
	case outOfFDs(err):
		// Our shortage, not the destination's answer: the sandbox sees
		// a lost SYN and retries.
		return Drop
	}
	return Refuse
}

func idString(id gstack.TransportEndpointID) (src, dst netip.AddrPort) {
	src = netip.AddrPortFrom(stack.FromAddr(id.RemoteAddress), id.RemotePort)
	dst = netip.AddrPortFrom(stack.FromAddr(id.LocalAddress), id.LocalPort)
	return src, dst
}

func networkOf(proto string, a netip.Addr) string {
	if a.Is4() {
		return proto + "4"
	}
	return proto + "6"
}

// outOfFDs reports whether err is the process or system running out of
// file descriptors.
func outOfFDs(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// Stats returns the state of egress's caps (those that are set).
func (e *Egress) Stats() []relay.LimitStat {
	var out []relay.LimitStat
	for _, l := range []*relay.Limit{e.cfg.TCPFlows, e.cfg.UDPFlows} {
		if l != nil {
			out = append(out, l.Stat())
		}
	}
	return out
}
