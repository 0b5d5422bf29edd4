// Package echo carries a stack's ICMP echo requests (ping, ping -6) to the
// host through unprivileged ICMP datagram sockets ("ping sockets") and
// writes the host's replies back as if the pinged address had answered.
//
// Ping sockets need the caller's group in net.ipv4.ping_group_range. Where
// the host forbids them, echo says so once and leaves requests to the stack,
// which answers its own (gateway) addresses.
package echo

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/relay"
)

// Config configures the echo relay.
type Config struct {
	// Stack is the stack whose echo requests are relayed.
	Stack *stack.Stack
	// Translate maps a pinged address to the host address to ping; false
	// leaves the request to the stack (which answers its own addresses and
	// ignores others). Nil pings every address as is.
	Translate func(dst netip.Addr) (netip.Addr, bool)
	// IdleTimeout closes a flow's host socket after this long without
	// requests (default 30 s).
	IdleTimeout time.Duration
	// Logger receives diagnostics; nil uses the stack's.
	Logger *slog.Logger
	// ListenPacket opens a host ping socket for a flow (network "udp4" or
	// "udp6"); nil uses golang.org/x/net/icmp's unprivileged ICMP
	// sockets. Tests give a fake host.
	ListenPacket func(network, address string) (net.PacketConn, error)
	// Flows caps concurrent ping sessions (source, destination,
	// identifier), each holding a host socket; requests that would open
	// one past the cap are dropped. Nil: no cap.
	Flows *relay.Limit
	// FDs is the host descriptor budget shared with the other relays; a
	// session that finds it spent is dropped. Nil: no budget.
	FDs *relay.Limit
}

// Relay relays echo requests. Close stops it.
type Relay struct {
	cfg    Config
	gs     *gstack.Stack
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex // guards flows, disabled
	// +checklocks:mu
	flows map[flowKey]*flow
	// +checklocks:mu
	disabled bool
}

type flowKey struct {
	src, dst tcpip.Address
	ident    uint16
}

// Start installs the relay's ICMP handlers on cfg.Stack.
func Start(cfg Config) (*Relay, error) {
	if cfg.Stack == nil {
		return nil, errors.New("echo: Config.Stack is nil")
	}
	if cfg.Translate == nil {
		cfg.Translate = func(a netip.Addr) (netip.Addr, bool) { return a, true }
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = cfg.Stack.Logger()
	}
	if cfg.ListenPacket == nil {
		cfg.ListenPacket = func(network, address string) (net.PacketConn, error) {
			return icmp.ListenPacket(network, address)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{cfg: cfg, gs: cfg.Stack.GVisor(), log: cfg.Logger, ctx: ctx, cancel: cancel, flows: make(map[flowKey]*flow)}
	r.gs.SetTransportProtocolHandler(header.ICMPv4ProtocolNumber, r.handle4)
	r.gs.SetTransportProtocolHandler(header.ICMPv6ProtocolNumber, r.handle6)
	return r, nil
}

// Close closes every host socket and waits for the readers.
func (r *Relay) Close() error {
	r.cancel()
	r.mu.Lock()
	for _, f := range r.flows {
		f.conn.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

func (r *Relay) handle4(id gstack.TransportEndpointID, pkt *gstack.PacketBuffer) bool {
	h := header.ICMPv4(pkt.TransportHeader().Slice())
	if len(h) < header.ICMPv4MinimumSize || h.Type() != header.ICMPv4Echo {
		return false
	}
	return r.request(id, pkt, false)
}

func (r *Relay) handle6(id gstack.TransportEndpointID, pkt *gstack.PacketBuffer) bool {
	h := header.ICMPv6(pkt.TransportHeader().Slice())
	if len(h) < header.ICMPv6EchoMinimumSize || h.Type() != header.ICMPv6EchoRequest {
		return false
	}
	return r.request(id, pkt, true)
}

// request sends one echo request to the host. It runs on the packet path
// and must not block: the only system calls are a socket creation for a new
// flow and a non-blocking send.
func (r *Relay) request(id gstack.TransportEndpointID, pkt *gstack.PacketBuffer, v6 bool) bool {
	dst, ok := r.cfg.Translate(stack.FromAddr(id.LocalAddress))
	if !ok {
		return false
	}
	msg := append([]byte(nil), pkt.TransportHeader().Slice()...)
	msg = append(msg, pkt.Data().AsRange().ToSlice()...)
	key := flowKey{src: id.RemoteAddress, dst: id.LocalAddress, ident: id.LocalPort}
	f, handled := r.flowFor(key, dst, pkt.NICID, v6)
	if f == nil {
		return handled
	}
	f.touch()
	// The kernel replaces the identifier with the socket's own.
	if _, err := f.conn.WriteTo(msg, &net.UDPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}); err != nil {
		r.log.Debug("echo: send failed", "dst", dst, "err", err)
	}
	return true
}

// flowFor returns key's session, opening its host socket if needed. With
// no session, handled says whether the request was dropped here (a cap)
// rather than left to the stack (ping sockets refused, relay closing).
func (r *Relay) flowFor(key flowKey, dst netip.Addr, nic tcpip.NICID, v6 bool) (f *flow, handled bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.disabled || r.ctx.Err() != nil {
		return nil, false
	}
	if f := r.flows[key]; f != nil {
		return f, true
	}
	if !r.cfg.Flows.Acquire() {
		return nil, true
	}
	if !r.cfg.FDs.Acquire() {
		r.cfg.Flows.Release()
		return nil, true
	}
	network, laddr := "udp4", "0.0.0.0"
	if v6 {
		network, laddr = "udp6", "::"
	}
	c, err := r.cfg.ListenPacket(network, laddr)
	if err != nil {
		r.release()
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			r.cfg.FDs.Drop()
			return nil, true
		}
		r.disabled = true
		r.log.Warn("ICMP echo: the host refuses ping sockets; only the gateway addresses will answer ping "+
			"(allow them with: sysctl -w net.ipv4.ping_group_range='0 2147483647')", "err", err)
		return nil, false
	}
	f = &flow{r: r, key: key, conn: c, nic: nic, v6: v6}
	f.touch()
	r.flows[key] = f
	r.wg.Add(1)
	go f.readReplies()
	return f, true
}

// release frees a session's slot and descriptor.
func (r *Relay) release() {
	r.cfg.FDs.Release()
	r.cfg.Flows.Release()
}

func (r *Relay) remove(f *flow) {
	r.mu.Lock()
	if r.flows[f.key] == f {
		delete(r.flows, f.key)
	}
	r.mu.Unlock()
	r.release()
}

// flow is one (source, destination, identifier) ping session.
type flow struct {
	r    *Relay
	key  flowKey
	conn net.PacketConn
	nic  tcpip.NICID
	v6   bool

	mu sync.Mutex // guards last
	// +checklocks:mu
	last time.Time
}

func (f *flow) touch() {
	f.mu.Lock()
	f.last = time.Now()
	f.mu.Unlock()
}

func (f *flow) idle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Since(f.last) > f.r.cfg.IdleTimeout
}

func (f *flow) readReplies() {
	defer f.r.wg.Done()
	defer f.r.remove(f)
	defer f.conn.Close()
	buf := make([]byte, 65536)
	for {
		f.conn.SetReadDeadline(time.Now().Add(f.r.cfg.IdleTimeout))
		n, _, err := f.conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !f.idle() {
				continue
			}
			return
		}
		f.reply(buf[:n])
	}
}

// reply writes the host's echo reply into the stack's NIC, from the pinged
// address to the sandbox, with the sandbox's own identifier.
func (f *flow) reply(msg []byte) {
	if len(msg) < 8 {
		return
	}
	var pkt []byte
	var proto tcpip.NetworkProtocolNumber
	if f.v6 {
		if header.ICMPv6(msg).Type() != header.ICMPv6EchoReply {
			return
		}
		pkt, proto = f.build6(msg), ipv6.ProtocolNumber
	} else {
		if header.ICMPv4(msg).Type() != header.ICMPv4EchoReply {
			return
		}
		pkt, proto = f.build4(msg), ipv4.ProtocolNumber
	}
	if err := f.r.gs.WriteRawPacket(f.nic, proto, buffer.MakeWithData(pkt)); err != nil {
		f.r.log.Debug("echo: write reply", "err", err)
	}
}

func (f *flow) build4(msg []byte) []byte {
	pkt := make([]byte, header.IPv4MinimumSize+len(msg))
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     f.key.dst,
		DstAddr:     f.key.src,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	ic := header.ICMPv4(pkt[header.IPv4MinimumSize:])
	copy(ic, msg)
	ic.SetIdent(f.key.ident)
	ic.SetChecksum(0)
	ic.SetChecksum(^checksumOf(ic))
	return pkt
}

func (f *flow) build6(msg []byte) []byte {
	pkt := make([]byte, header.IPv6MinimumSize+len(msg))
	ip := header.IPv6(pkt)
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(len(msg)),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          64,
		SrcAddr:           f.key.dst,
		DstAddr:           f.key.src,
	})
	ic := header.ICMPv6(pkt[header.IPv6MinimumSize:])
	copy(ic, msg)
	ic.SetIdent(f.key.ident)
	ic.SetChecksum(0)
	ic.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header:      ic[:header.ICMPv6EchoMinimumSize],
		Src:         f.key.dst,
		Dst:         f.key.src,
		PayloadCsum: checksumOf(ic[header.ICMPv6EchoMinimumSize:]),
		PayloadLen:  len(ic) - header.ICMPv6EchoMinimumSize,
	}))
	return pkt
}

// Flows returns the number of ping sessions with an open host socket.
func (r *Relay) Flows() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.flows)
}

// Stats returns the state of the session cap (if set).
func (r *Relay) Stats() []relay.LimitStat {
	if r.cfg.Flows == nil {
		return nil
	}
	return []relay.LimitStat{r.cfg.Flows.Stat()}
}
