package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// listenBacklog matches Linux's default net.core.somaxconn, which is what
// Go's net.Listen ends up with.
const listenBacklog = 4096

// Dialer holds options for connecting through a Stack, in the manner of
// net.Dialer. The zero value of every field but Stack is usable.
type Dialer struct {
	// Stack carries the connections. Required.
	Stack *Stack
	// Timeout bounds the whole dial, name resolution included; zero means
	// only ctx bounds it (and TCP gives up after its SYN retries, with
	// ETIMEDOUT).
	Timeout time.Duration
	// LocalAddr, if valid, is bound before connecting. Its port may be 0.
	LocalAddr netip.AddrPort
	// Resolver looks up host names other than "localhost". Nil means
	// addresses must be IP literals. Stack.Resolver makes one that queries
	// a DNS server through the stack.
	Resolver *net.Resolver
}

// Dial connects to address on the named network ("tcp", "tcp4", "tcp6",
// "udp", "udp4", "udp6") through the stack. Addresses are "host:port" as
// for net.Dial; host must be an IP literal or "localhost" (use a Dialer
// with a Resolver for names).
func (s *Stack) Dial(network, address string) (net.Conn, error) {
	return s.DialContext(context.Background(), network, address)
}

// DialContext is Dial with a context, so it can serve as
// http.Transport.DialContext. When ctx ends before the connection is
// established the dial fails with an error for which errors.Is(err,
// context.DeadlineExceeded) or errors.Is(err, context.Canceled) holds.
func (s *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d := Dialer{Stack: s}
	return d.DialContext(ctx, network, address)
}

// Dial is DialContext with a background context.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext connects to address on the named network, trying each
// address the host name resolves to in turn.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	fam, stream, err := parseNetwork(network)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	addrs, err := d.resolve(ctx, network, address, fam, false)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	var first error
	for _, ap := range addrs {
		c, err := d.dialOne(ctx, network, stream, ap)
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

func (d *Dialer) dialOne(ctx context.Context, network string, stream bool, raddr netip.AddrPort) (net.Conn, error) {
	if stream {
		return d.Stack.dialTCP(ctx, network, d.LocalAddr, raddr)
	}
	return d.Stack.dialUDP(ctx, network, d.LocalAddr, raddr)
}

// DialTCP connects a TCP socket to raddr, binding laddr first when it is
// valid.
func (s *Stack) DialTCP(ctx context.Context, laddr, raddr netip.AddrPort) (*TCPConn, error) {
	c, err := s.dialTCP(ctx, "tcp", laddr, raddr)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialUDP makes a UDP socket connected to raddr (binding laddr first when
// it is valid).
func (s *Stack) DialUDP(laddr, raddr netip.AddrPort) (*UDPConn, error) {
	c, err := s.dialUDP(context.Background(), "udp", laddr, raddr)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (s *Stack) dialTCP(ctx context.Context, network string, laddr, raddr netip.AddrPort) (*TCPConn, error) {
	so, err := s.dialSocket(ctx, SOCK_STREAM, laddr, raddr)
	if err != nil {
		return nil, dialErr(network, laddr, raddr, err)
	}
	return newTCPConn(so), nil
}

func (s *Stack) dialUDP(ctx context.Context, network string, laddr, raddr netip.AddrPort) (*UDPConn, error) {
	so, err := s.dialSocket(ctx, SOCK_DGRAM, laddr, raddr)
	if err != nil {
		return nil, dialErr(network, laddr, raddr, err)
	}
	return newUDPConn(so, "udp"), nil
}

func (s *Stack) dialSocket(ctx context.Context, typ int, laddr, raddr netip.AddrPort) (*Socket, error) {
	so, err := s.Socket(familyOf(raddr.Addr()), typ, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if laddr.IsValid() {
		if err := so.Bind(laddr); err != nil {
			so.Close()
			return nil, os.NewSyscallError("bind", err)
		}
	}
	if err := so.connect(ctx, raddr); err != nil {
		so.Close()
		if errno, ok := err.(syscall.Errno); ok {
			return nil, os.NewSyscallError("connect", errno)
		}
		return nil, err
	}
	return so, nil
}

func dialErr(network string, laddr, raddr netip.AddrPort, err error) error {
	oe := &net.OpError{Op: "dial", Net: network, Addr: sockAddr(network, raddr), Err: netErr(err)}
	if laddr.IsValid() {
		oe.Source = sockAddr(network, laddr)
	}
	return oe
}

// Listen announces on the local network address, like net.Listen, for
// "tcp", "tcp4" and "tcp6". An empty or unspecified host listens on every
// address of the stack; for "tcp" that includes IPv4 (a dual-stack socket).
func (s *Stack) Listen(network, address string) (net.Listener, error) {
	fam, laddr, err := s.listenAddr(network, address, true)
	if err != nil {
		return nil, err
	}
	l, err := s.listenTCP(network, fam, laddr)
	if err != nil {
		return nil, err // not a nil *TCPListener in a non-nil interface
	}
	return l, nil
}

// listenAddr resolves the local address of Listen (stream) or
// ListenPacket, and its family; errors are *net.OpError.
func (s *Stack) listenAddr(network, address string, stream bool) (int, netip.AddrPort, error) {
	fam, isStream, err := parseNetwork(network)
	if err == nil && isStream != stream {
		err = net.UnknownNetworkError(network)
	}
	if err != nil {
		return 0, netip.AddrPort{}, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	d := Dialer{Stack: s}
	addrs, err := d.resolve(context.Background(), network, address, fam, true)
	if err != nil {
		return 0, netip.AddrPort{}, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	return familyOf(addrs[0].Addr()), addrs[0], nil
}

// ListenTCP listens on laddr; an unspecified IPv6 address gives a
// dual-stack listener.
func (s *Stack) ListenTCP(laddr netip.AddrPort) (*TCPListener, error) {
	return s.listenTCP("tcp", familyOf(laddr.Addr()), laddr)
}

func (s *Stack) listenTCP(network string, fam int, laddr netip.AddrPort) (*TCPListener, error) {
	so, err := s.bindSocket(fam, SOCK_STREAM, laddr)
	if err == nil {
		if lerr := so.Listen(listenBacklog); lerr != nil {
			so.Close()
			err = os.NewSyscallError("listen", lerr)
		}
	}
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: sockAddr(network, laddr), Err: err}
	}
	return &TCPListener{so: so, addr: localAddr(so, network)}, nil
}

// ListenPacket announces on the local network address for "udp", "udp4"
// and "udp6", like net.ListenPacket.
func (s *Stack) ListenPacket(network, address string) (net.PacketConn, error) {
	fam, laddr, err := s.listenAddr(network, address, false)
	if err != nil {
		return nil, err
	}
	c, err := s.listenUDP(network, fam, laddr)
	if err != nil {
		return nil, err // not a nil *UDPConn in a non-nil interface
	}
	return c, nil
}

// ListenUDP binds an unconnected UDP socket to laddr.
func (s *Stack) ListenUDP(laddr netip.AddrPort) (*UDPConn, error) {
	return s.listenUDP("udp", familyOf(laddr.Addr()), laddr)
}

func (s *Stack) listenUDP(network string, fam int, laddr netip.AddrPort) (*UDPConn, error) {
	so, err := s.bindSocket(fam, SOCK_DGRAM, laddr)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: sockAddr(network, laddr), Err: err}
	}
	return newUDPConn(so, network), nil
}

func (s *Stack) bindSocket(fam, typ int, laddr netip.AddrPort) (*Socket, error) {
	so, err := s.Socket(fam, typ, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if fam == AF_INET6 && laddr.Addr().Is6() && !laddr.Addr().IsUnspecified() {
		// Like Go: a listener on a specific IPv6 address does not take IPv4.
		so.SetSockOpt(IPPROTO_IPV6, IPV6_V6ONLY, 1)
	}
	if typ == SOCK_STREAM {
		// Go's net package sets SO_REUSEADDR on listeners, so a restarted
		// server can bind while old connections sit in TIME-WAIT.
		so.SetSockOpt(SOL_SOCKET, SO_REUSEADDR, 1)
	}
	if err := so.Bind(laddr); err != nil {
		so.Close()
		return nil, os.NewSyscallError("bind", err)
	}
	return so, nil
}

// parseNetwork returns the address family (0: either) and whether the
// network is a stream one.
func parseNetwork(network string) (fam int, stream bool, err error) {
	switch network {
	case "tcp", "udp":
	case "tcp4", "udp4":
		fam = AF_INET
	case "tcp6", "udp6":
		fam = AF_INET6
	default:
		return 0, false, net.UnknownNetworkError(network)
	}
	return fam, network[:3] == "tcp", nil
}

func familyOf(a netip.Addr) int {
	if a.Is4() || a.Is4In6() {
		return AF_INET
	}
	return AF_INET6
}

// resolve turns "host:port" into candidate addresses of the wanted family.
// For listening, an empty host is the unspecified address (IPv6 for plain
// "tcp"/"udp", giving a dual-stack socket); for dialing it is loopback.
func (d *Dialer) resolve(ctx context.Context, network, address string, fam int, listen bool) ([]netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	port, err := net.LookupPort(network, portStr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	switch {
	case host == "" && listen:
		ips = []netip.Addr{netip.IPv6Unspecified()}
		if fam == AF_INET {
			ips[0] = netip.IPv4Unspecified()
		}
	case host == "" || host == "localhost":
		ips = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	default:
		if ip, perr := netip.ParseAddr(host); perr == nil {
			ips = []netip.Addr{ip.WithZone("")}
		} else if ips, err = d.lookup(ctx, host); err != nil {
			return nil, err
		}
	}
	var out []netip.AddrPort
	for _, ip := range ips {
		ip = ip.Unmap()
		if fam == 0 || fam == familyOf(ip) || (fam == AF_INET6 && ip.IsUnspecified()) {
			out = append(out, netip.AddrPortFrom(ip, uint16(port)))
		}
	}
	if len(out) == 0 {
		return nil, &net.AddrError{Err: "no suitable address found", Addr: host}
	}
	return out, nil
}

func (d *Dialer) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if d.Resolver == nil {
		return nil, &net.DNSError{Err: "no resolver configured (stack.Dialer.Resolver)", Name: host, IsNotFound: true}
	}
	return d.Resolver.LookupNetIP(ctx, "ip", host)
}

// sockAddr builds the net.Addr the net package would report.
func sockAddr(network string, ap netip.AddrPort) net.Addr {
	if network[:3] == "udp" {
		return net.UDPAddrFromAddrPort(ap)
	}
	return net.TCPAddrFromAddrPort(ap)
}

func localAddr(so *Socket, network string) net.Addr {
	ap, err := so.GetSockName()
	if err != nil {
		return nil
	}
	return sockAddr(network, ap)
}

func remoteAddr(so *Socket, network string) net.Addr {
	ap, err := so.GetPeerName()
	if err != nil {
		return nil
	}
	return sockAddr(network, ap)
}

// dialTimeoutError is what a dial reports when its context's deadline
// passes: "i/o timeout" as in the net package, a net.Error whose Timeout
// is true, and errors.Is-equal to context.DeadlineExceeded.
type dialTimeoutError struct{}

func (dialTimeoutError) Error() string   { return "i/o timeout" }
func (dialTimeoutError) Timeout() bool   { return true }
func (dialTimeoutError) Temporary() bool { return true }
func (dialTimeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded || target == os.ErrDeadlineExceeded
}

// netErr turns the socket layer's outcomes into what Go's net package
// returns: os.ErrDeadlineExceeded for a passed deadline, net.ErrClosed for
// use after Close, *os.SyscallError for errno values.
func netErr(err error) error {
	switch {
	case err == errDeadline:
		return os.ErrDeadlineExceeded
	case err == errClosed:
		return net.ErrClosed
	case errors.Is(err, context.DeadlineExceeded):
		return dialTimeoutError{}
	}
	return err
}

// opErr wraps a data-path error like the net package does:
// "read tcp 198.18.0.1:4242->198.18.0.2:80: read: connection reset by peer".
func opErr(op, network string, src, dst net.Addr, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: network, Source: src, Addr: dst, Err: netErr(err)}
}

// TCPConn is a TCP connection on a Stack. It implements net.Conn and,
// like *net.TCPConn, CloseRead and CloseWrite.
type TCPConn struct {
	so     *Socket
	laddr  net.Addr
	raddr  net.Addr
	closed atomic.Bool
}

func newTCPConn(so *Socket) *TCPConn {
	return &TCPConn{so: so, laddr: localAddr(so, "tcp"), raddr: remoteAddr(so, "tcp")}
}

// Socket returns the underlying socket, for socket options.
func (c *TCPConn) Socket() *Socket { return c.so }

// Read implements net.Conn.
func (c *TCPConn) Read(b []byte) (int, error) {
	n, _, err := c.so.recv(context.Background(), b, 0, false)
	if err == nil && n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return n, c.err("read", err)
}

// Write implements net.Conn.
func (c *TCPConn) Write(b []byte) (int, error) {
	n, err := c.so.send(b, 0, nil)
	return n, c.err("write", err)
}

// Close implements net.Conn. It sends a FIN; use SetLinger(0) first to
// reset the connection instead.
func (c *TCPConn) Close() error {
	if c.closed.Swap(true) {
		return c.err("close", errClosed)
	}
	return c.so.Close()
}

// CloseRead shuts down the reading side.
func (c *TCPConn) CloseRead() error { return c.err("close", c.so.Shutdown(SHUT_RD)) }

// CloseWrite shuts down the writing side: the peer reads EOF once it has
// read everything written before.
func (c *TCPConn) CloseWrite() error { return c.err("close", c.so.Shutdown(SHUT_WR)) }

// LocalAddr implements net.Conn; the address is a *net.TCPAddr.
func (c *TCPConn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr implements net.Conn; the address is a *net.TCPAddr.
func (c *TCPConn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline implements net.Conn.
func (c *TCPConn) SetDeadline(t time.Time) error { return c.so.SetDeadline(t) }

// SetReadDeadline implements net.Conn.
func (c *TCPConn) SetReadDeadline(t time.Time) error { return c.so.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn.
func (c *TCPConn) SetWriteDeadline(t time.Time) error { return c.so.SetWriteDeadline(t) }

// SetNoDelay controls Nagle's algorithm; true (the default) disables it.
func (c *TCPConn) SetNoDelay(noDelay bool) error {
	return c.err("set", c.so.SetSockOpt(IPPROTO_TCP, TCP_NODELAY, boolInt(noDelay)))
}

// SetKeepAlive turns TCP keepalives on or off.
func (c *TCPConn) SetKeepAlive(on bool) error {
	return c.err("set", c.so.SetSockOpt(SOL_SOCKET, SO_KEEPALIVE, boolInt(on)))
}

// SetLinger sets SO_LINGER as *net.TCPConn.SetLinger does: sec < 0 is the
// default (a FIN on close), 0 makes Close send a RST.
func (c *TCPConn) SetLinger(sec int) error {
	l := &syscall.Linger{Onoff: 1, Linger: int32(max(sec, 0))}
	if sec < 0 {
		l.Onoff = 0
	}
	return c.err("set", c.so.SetSockOptLinger(l))
}

func (c *TCPConn) err(op string, err error) error {
	if err == syscall.EBADF {
		err = errClosed
	}
	return opErr(op, "tcp", c.laddr, c.raddr, err)
}

// TCPListener is a TCP listener on a Stack; it implements net.Listener.
type TCPListener struct {
	so     *Socket
	addr   net.Addr
	closed atomic.Bool
}

// Socket returns the underlying socket.
func (l *TCPListener) Socket() *Socket { return l.so }

// Accept implements net.Listener.
func (l *TCPListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptTCP accepts the next connection.
func (l *TCPListener) AcceptTCP() (*TCPConn, error) {
	return l.AcceptContext(context.Background())
}

// AcceptContext accepts the next connection, giving up when ctx ends.
func (l *TCPListener) AcceptContext(ctx context.Context) (*TCPConn, error) {
	so, _, err := l.so.AcceptContext(ctx)
	if err != nil {
		if err == syscall.EBADF {
			err = errClosed
		} else if err == syscall.EAGAIN {
			err = errDeadline
		}
		return nil, opErr("accept", "tcp", nil, l.addr, err)
	}
	return newTCPConn(so), nil
}

// Close implements net.Listener; blocked Accept calls return net.ErrClosed.
func (l *TCPListener) Close() error {
	if l.closed.Swap(true) {
		return opErr("close", "tcp", nil, l.addr, errClosed)
	}
	return l.so.Close()
}

// Addr implements net.Listener; the address is a *net.TCPAddr.
func (l *TCPListener) Addr() net.Addr { return l.addr }

// SetDeadline sets the deadline for Accept.
func (l *TCPListener) SetDeadline(t time.Time) error { return l.so.SetReadDeadline(t) }

// UDPConn is a UDP socket on a Stack. It implements net.Conn (when
// connected, as returned by Dial) and net.PacketConn.
type UDPConn struct {
	so      *Socket
	network string
	laddr   net.Addr
	raddr   net.Addr
	closed  atomic.Bool
}

func newUDPConn(so *Socket, network string) *UDPConn {
	return &UDPConn{so: so, network: network, laddr: localAddr(so, "udp"), raddr: remoteAddr(so, "udp")}
}

// Socket returns the underlying socket.
func (c *UDPConn) Socket() *Socket { return c.so }

// Read reads one datagram from a connected socket.
func (c *UDPConn) Read(b []byte) (int, error) {
	n, _, err := c.so.recv(context.Background(), b, 0, false)
	return n, c.err("read", nil, err)
}

// ReadFrom implements net.PacketConn; the address is a *net.UDPAddr.
func (c *UDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// ReadFromUDPAddrPort reads a datagram and its sender's address.
func (c *UDPConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, from, err := c.so.recv(context.Background(), b, 0, true)
	return n, from, c.err("read", nil, err)
}

// Write sends one datagram on a connected socket.
func (c *UDPConn) Write(b []byte) (int, error) {
	n, err := c.so.send(b, 0, nil)
	return n, c.err("write", nil, err)
}

// WriteTo implements net.PacketConn. addr is a *net.UDPAddr or any
// net.Addr whose String is "ip:port".
func (c *UDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ap, err := addrPortOf(addr)
	if err != nil {
		return 0, &net.OpError{Op: "write", Net: c.network, Source: c.laddr, Addr: addr, Err: err}
	}
	return c.WriteToUDPAddrPort(b, ap)
}

// WriteToUDPAddrPort sends a datagram to addr.
func (c *UDPConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	fa, err := c.so.toFull(addr)
	if err != nil {
		return 0, c.err("write", net.UDPAddrFromAddrPort(addr), err)
	}
	n, err := c.so.send(b, 0, &fa)
	return n, c.err("write", net.UDPAddrFromAddrPort(addr), err)
}

// Close implements net.Conn and net.PacketConn.
func (c *UDPConn) Close() error {
	if c.closed.Swap(true) {
		return c.err("close", nil, errClosed)
	}
	return c.so.Close()
}

// LocalAddr returns the local *net.UDPAddr.
func (c *UDPConn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr returns the connected peer's *net.UDPAddr, or nil.
func (c *UDPConn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline implements net.Conn.
func (c *UDPConn) SetDeadline(t time.Time) error { return c.so.SetDeadline(t) }

// SetReadDeadline implements net.Conn.
func (c *UDPConn) SetReadDeadline(t time.Time) error { return c.so.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn.
func (c *UDPConn) SetWriteDeadline(t time.Time) error { return c.so.SetWriteDeadline(t) }

func (c *UDPConn) err(op string, dst net.Addr, err error) error {
	if err == syscall.EBADF {
		err = errClosed
	}
	if dst == nil {
		dst = c.raddr
	}
	return opErr(op, c.network, c.laddr, dst, err)
}

func addrPortOf(a net.Addr) (netip.AddrPort, error) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort(), nil
	case *net.TCPAddr:
		return a.AddrPort(), nil
	case nil:
		return netip.AddrPort{}, syscall.EDESTADDRREQ
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", a.String(), err)
	}
	return ap, nil
}
