package egress

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/tunstack/tunstack/stack"
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
)

// Translator maps the destination a sandbox flow asked for to the host
// address to dial. network is "tcp" or "udp".
type Translator func(network string, dst netip.AddrPort) (netip.AddrPort, Verdict)

// Config configures egress.
type Config struct {
	// Stack is the stack whose unclaimed TCP and UDP flows are carried.
	Stack *stack.Stack
	// Dialer dials host connections; nil means a *net.Dialer.
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
}

// Egress relays flows. Create it with Start; Close stops it.
type Egress struct {
	cfg    Config
	gs     *gstack.Stack
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	tcp *tcpRelay
	udp *udpRelay

	mu sync.Mutex // guards conns
	// +checklocks:mu
	conns map[closer]struct{}
}

type closer interface{ abort() }

// Start installs the TCP and UDP forwarders on cfg.Stack.
func Start(cfg Config) (*Egress, error) {
	if cfg.Stack == nil {
		return nil, errors.New("egress: Config.Stack is nil")
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{}
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
		ctx: ctx, cancel: cancel, conns: make(map[closer]struct{}),
	}
	e.tcp = newTCPRelay(e)
	e.udp = &udpRelay{e: e}
	e.gs.SetTransportProtocolHandler(tcp.ProtocolNumber, e.tcp.handle)
	e.gs.SetTransportProtocolHandler(udp.ProtocolNumber, udp.NewForwarder(e.gs, e.udp.handle).HandlePacket)
	return e, nil
}

// Close stops accepting flows, aborts the open ones and waits for their
// goroutines.
func (e *Egress) Close() error {
	e.cancel()
	e.mu.Lock()
	for c := range e.conns {
		c.abort()
	}
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

// track registers c so Close can abort it; it reports false if egress is
// closing, in which case the caller must abort c itself.
func (e *Egress) track(c closer) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx.Err() != nil {
		return false
	}
	e.conns[c] = struct{}{}
	return true
}

func (e *Egress) untrack(c closer) {
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
}

// go runs f as a tracked goroutine unless egress is closing.
func (e *Egress) goTracked(f func()) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx.Err() != nil {
		return false
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
	return true
}

// reject answers pkt the way a router would for verdict v.
func (e *Egress) reject(pkt *gstack.PacketBuffer, v Verdict, isTCP bool) {
	switch pkt.NetworkProtocolNumber {
	case ipv4.ProtocolNumber:
		if h, ok := e.gs.NetworkProtocolInstance(ipv4.ProtocolNumber).(gstack.RejectIPv4WithHandler); ok {
			_ = h.SendRejectionError(pkt, rejection(v, isTCP, gstack.RejectIPv4WithICMPHostUnreachable,
				gstack.RejectIPv4WithICMPPortUnreachable, gstack.RejectIPv4WithTCPReset), true)
		}
	case ipv6.ProtocolNumber:
		if h, ok := e.gs.NetworkProtocolInstance(ipv6.ProtocolNumber).(gstack.RejectIPv6WithHandler); ok {
			_ = h.SendRejectionError(pkt, rejection(v, isTCP, gstack.RejectIPv6WithICMPAddrUnreachable,
				gstack.RejectIPv6WithICMPPortUnreachable, gstack.RejectIPv6WithTCPReset), true)
		}
	}
}

// rejection picks the answer of one family: a refusal is an RST for TCP
// and port unreachable otherwise; anything else is host unreachable.
func rejection[T any](v Verdict, isTCP bool, unreachable, port, reset T) T {
	switch {
	case v != Refuse:
		return unreachable
	case isTCP:
		return reset
	}
	return port
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
