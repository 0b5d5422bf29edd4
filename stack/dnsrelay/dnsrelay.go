// Package dnsrelay answers DNS on the stack's resolver addresses (10.0.2.3
// and fd00::3 in a default sandbox), over UDP and TCP, by relaying each
// query to the host's resolvers.
//
// With no upstream (no /etc/resolv.conf, an empty one, or every upstream
// failing) it answers SERVFAIL at once rather than letting clients time out.
package dnsrelay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/tunstack/tunstack/stack"
)

// Dialer opens host connections to upstream resolvers.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Config configures a relay.
type Config struct {
	// Stack is the stack to serve on.
	Stack *stack.Stack
	// Addrs are the stack addresses to answer on (port 53). They must be
	// assigned to a NIC.
	Addrs []netip.Addr
	// Upstreams are the resolvers queries go to, tried in order.
	Upstreams []netip.AddrPort
	// Dialer reaches the upstreams; nil means a *net.Dialer.
	Dialer Dialer
	// Timeout bounds one upstream exchange (default 2 s).
	Timeout time.Duration
	// Logger receives diagnostics; nil uses the stack's.
	Logger *slog.Logger
}

// maxInflight bounds concurrent UDP queries so a flood cannot grow
// goroutines without bound; excess queries are dropped (clients retry).
const maxInflight = 256

// Relay serves DNS. Close stops it.
type Relay struct {
	cfg  Config
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
	sem  chan struct{}
	udp  []*gonet.UDPConn
	tcp  []*gonet.TCPListener
	mu   sync.Mutex // guards conns
	// +checklocks:mu
	conns map[net.Conn]struct{}
}

// Start binds port 53 on each address and serves until Close.
func Start(cfg Config) (*Relay, error) {
	if cfg.Stack == nil {
		return nil, errors.New("dnsrelay: Config.Stack is nil")
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = cfg.Stack.Logger()
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &Relay{cfg: cfg, log: cfg.Logger, ctx: ctx, stop: stop, sem: make(chan struct{}, maxInflight), conns: make(map[net.Conn]struct{})}
	if len(cfg.Upstreams) == 0 {
		r.log.Warn("DNS: no upstream resolver (no nameserver in /etc/resolv.conf and no --dns-upstream); queries get SERVFAIL")
	}
	for _, a := range cfg.Addrs {
		if err := r.listen(a); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

func (r *Relay) listen(a netip.Addr) error {
	gs := r.cfg.Stack.GVisor()
	proto := tcpip.NetworkProtocolNumber(ipv4.ProtocolNumber)
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	full := stack.FullAddr(netip.AddrPortFrom(a, 53))
	uc, err := gonet.DialUDP(gs, &full, nil, proto)
	if err != nil {
		return fmt.Errorf("dnsrelay: listen udp %s: %w", netip.AddrPortFrom(a, 53), err)
	}
	r.udp = append(r.udp, uc)
	tl, err := gonet.ListenTCP(gs, full, proto)
	if err != nil {
		return fmt.Errorf("dnsrelay: listen tcp %s: %w", netip.AddrPortFrom(a, 53), err)
	}
	r.tcp = append(r.tcp, tl)
	r.wg.Add(2)
	go r.serveUDP(uc)
	go r.serveTCP(tl)
	return nil
}

// Close stops serving and waits for in-flight queries.
func (r *Relay) Close() error {
	r.stop()
	for _, c := range r.udp {
		c.Close()
	}
	for _, l := range r.tcp {
		l.Close()
	}
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

func (r *Relay) serveUDP(c *gonet.UDPConn) {
	defer r.wg.Done()
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		select {
		case r.sem <- struct{}{}:
		default:
			continue
		}
		// Queries are small: copy out rather than hold 64 KiB each.
		q := append([]byte(nil), buf[:n]...)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-r.sem }()
			if resp := r.answer(q, "udp"); resp != nil {
				c.WriteTo(resp, from)
			}
		}()
	}
}

func (r *Relay) serveTCP(l *gonet.TCPListener) {
	defer r.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.ctx.Err() != nil {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.conns[c] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		go r.serveConn(c)
	}
}

// serveConn answers length-prefixed queries (RFC 7766) until the client
// closes or stays idle for 10 s.
func (r *Relay) serveConn(c net.Conn) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		q, err := readTCPMsg(c)
		if err != nil {
			return
		}
		resp := r.answer(q, "tcp")
		if resp == nil {
			return
		}
		if err := writeTCPMsg(c, resp); err != nil {
			return
		}
	}
}

// answer relays q to the upstreams in turn and returns the first response,
// or SERVFAIL. It returns nil only for input that is not a DNS query.
func (r *Relay) answer(q []byte, network string) []byte {
	var req dns.Msg
	if err := req.Unpack(q); err != nil || req.Response {
		return nil
	}
	for _, up := range r.cfg.Upstreams {
		resp, err := r.exchange(q, network, up)
		if err == nil {
			return resp
		}
		r.log.Debug("DNS: upstream failed", "upstream", up, "network", network, "err", err)
	}
	fail := new(dns.Msg)
	fail.SetRcode(&req, dns.RcodeServerFailure)
	out, err := fail.Pack()
	if err != nil {
		return nil
	}
	return out
}

func (r *Relay) exchange(q []byte, network string, up netip.AddrPort) ([]byte, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeout)
	defer cancel()
	c, err := r.cfg.Dialer.DialContext(ctx, network, up.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if network == "tcp" {
		if err := writeTCPMsg(c, q); err != nil {
			return nil, err
		}
		return readTCPMsg(c)
	}
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		// Ignore stray datagrams whose ID does not match.
		if n >= 2 && buf[0] == q[0] && buf[1] == q[1] {
			return buf[:n], nil
		}
	}
}

func readTCPMsg(c net.Conn) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func writeTCPMsg(c net.Conn, msg []byte) error {
	buf := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	_, err := c.Write(buf)
	return err
}
