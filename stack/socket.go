package stack

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tunstack/tunstack/internal/deadline"
)

// Socket is a BSD-style socket on a Stack. Its methods mirror the socket
// system calls and report failures as syscall.Errno values, so code written
// against BSD sockets sees the same errors it would on Linux
// (errors.Is(err, syscall.ECONNREFUSED) and so on).
//
// Addresses are netip.AddrPort values. An AF_INET6 socket accepts IPv4
// addresses and treats them as IPv4-mapped IPv6 addresses, as Linux does for
// ::ffff:a.b.c.d; an AF_INET socket rejects IPv6 addresses with
// EAFNOSUPPORT.
//
// A Socket is safe for concurrent use. Blocking calls return EBADF when the
// socket is closed under them, and EAGAIN when a deadline set with
// SetDeadline passes (the way SO_RCVTIMEO and SO_SNDTIMEO behave).
type Socket struct {
	st     *Stack
	family int
	typ    int
	proto  int
	net    tcpip.NetworkProtocolNumber
	ep     tcpip.Endpoint
	wq     *waiter.Queue

	nonblock atomic.Bool
	rd, wd   deadline.Deadline

	closeOnce sync.Once
	closing   chan struct{}
}

// Socket creates a socket like socket(2). domain is AF_INET or
// AF_INET6; typ is SOCK_STREAM or SOCK_DGRAM,
// optionally or-ed with SOCK_NONBLOCK (SOCK_CLOEXEC is accepted and
// ignored); proto is 0 or the matching IPPROTO_TCP / IPPROTO_UDP.
// SOCK_DGRAM with IPPROTO_ICMP (or IPPROTO_ICMPV6) gives an unprivileged
// ping socket as on Linux.
func (s *Stack) Socket(domain, typ, proto int) (*Socket, error) {
	netProto, err := netProtoOf(domain)
	if err != nil {
		return nil, err
	}
	nonblock := typ&SOCK_NONBLOCK != 0
	typ &^= SOCK_NONBLOCK | SOCK_CLOEXEC
	transProto, proto, err := transProtoOf(domain, typ, proto)
	if err != nil {
		return nil, err
	}
	wq := new(waiter.Queue)
	ep, terr := s.gs.NewEndpoint(transProto, netProto, wq)
	if terr != nil {
		return nil, Errno(terr)
	}
	so := newSocket(s, domain, typ, proto, netProto, ep, wq)
	so.nonblock.Store(nonblock)
	return so, nil
}

func newSocket(s *Stack, family, typ, proto int, netProto tcpip.NetworkProtocolNumber, ep tcpip.Endpoint, wq *waiter.Queue) *Socket {
	return &Socket{
		st: s, family: family, typ: typ, proto: proto, net: netProto,
		ep: ep, wq: wq,
		closing: make(chan struct{}),
	}
}

func netProtoOf(domain int) (tcpip.NetworkProtocolNumber, error) {
	switch domain {
	case AF_INET:
		return ipv4.ProtocolNumber, nil
	case AF_INET6:
		return ipv6.ProtocolNumber, nil
	}
	return 0, syscall.EAFNOSUPPORT
}

func transProtoOf(domain, typ, proto int) (tcpip.TransportProtocolNumber, int, error) {
	switch typ {
	case SOCK_STREAM:
		if proto == 0 || proto == IPPROTO_TCP {
			return tcp.ProtocolNumber, IPPROTO_TCP, nil
		}
	case SOCK_DGRAM:
		switch {
		case proto == 0 || proto == IPPROTO_UDP:
			return udp.ProtocolNumber, IPPROTO_UDP, nil
		case domain == AF_INET && proto == IPPROTO_ICMP:
			return icmp.ProtocolNumber4, proto, nil
		case domain == AF_INET6 && proto == IPPROTO_ICMPV6:
			return icmp.ProtocolNumber6, proto, nil
		}
	default:
		return 0, 0, syscall.ESOCKTNOSUPPORT
	}
	return 0, 0, syscall.EPROTONOSUPPORT
}

// Family, Type and Protocol return the arguments the socket was created
// with (Type without SOCK_NONBLOCK).
func (so *Socket) Family() int { return so.family }

// Type returns the socket type, SOCK_STREAM or SOCK_DGRAM.
func (so *Socket) Type() int { return so.typ }

// Protocol returns the IP protocol number (IPPROTO_TCP, IPPROTO_UDP, ...).
func (so *Socket) Protocol() int { return so.proto }

// Stack returns the stack the socket lives on.
func (so *Socket) Stack() *Stack { return so.st }

// Endpoint returns the underlying gVisor endpoint, for callers that need an
// option this type does not wrap.
func (so *Socket) Endpoint() tcpip.Endpoint { return so.ep }

// SetNonblock puts the socket in (or out of) non-blocking mode, like
// O_NONBLOCK: calls that would block return EAGAIN, and Connect returns
// EINPROGRESS.
func (so *Socket) SetNonblock(nonblocking bool) { so.nonblock.Store(nonblocking) }

// toFull converts a Go address to the socket's address family.
func (so *Socket) toFull(ap netip.AddrPort) (tcpip.FullAddress, error) {
	a := ap.Addr()
	if !a.IsValid() {
		return tcpip.FullAddress{}, syscall.EINVAL
	}
	fa := tcpip.FullAddress{Port: ap.Port()}
	switch {
	case so.family == AF_INET:
		if !a.Unmap().Is4() {
			return tcpip.FullAddress{}, syscall.EAFNOSUPPORT
		}
		a = a.Unmap()
		if !a.IsUnspecified() {
			fa.Addr = tcpip.AddrFrom4(a.As4())
		}
	case a.Is4():
		// Go code passes plain IPv4 addresses; Linux spells the same
		// thing ::ffff:a.b.c.d on an AF_INET6 socket.
		if a.IsUnspecified() {
			// Binding an AF_INET6 socket to 0.0.0.0 is not a thing on
			// Linux; the dual-stack wildcard is ::.
			return tcpip.FullAddress{}, syscall.EINVAL
		}
		fa.Addr = tcpip.AddrFrom16(netip.AddrFrom16(a.As16()).As16())
	default:
		if !a.IsUnspecified() {
			fa.Addr = tcpip.AddrFrom16(a.As16())
		}
	}
	return fa, nil
}

// fromFull converts a gVisor address back, unmapping IPv4-mapped addresses
// so Go callers compare them with plain IPv4 values.
func fromFull(fa tcpip.FullAddress, family int) netip.AddrPort {
	a := FromAddr(fa.Addr)
	if !a.IsValid() {
		if family == AF_INET6 {
			a = netip.IPv6Unspecified()
		} else {
			a = netip.IPv4Unspecified()
		}
	}
	return netip.AddrPortFrom(a.Unmap(), fa.Port)
}

// Bind assigns a local address, like bind(2). A zero port picks an
// ephemeral one; an unspecified address binds to all addresses.
func (so *Socket) Bind(addr netip.AddrPort) error {
	fa, err := so.toFull(addr)
	if err != nil {
		return err
	}
	return errOrNil(Errno(so.ep.Bind(fa)))
}

// Listen marks a stream socket as accepting connections, like listen(2).
func (so *Socket) Listen(backlog int) error {
	if backlog <= 0 {
		backlog = 1
	}
	if err := errOrNil(Errno(so.ep.Listen(backlog))); err != nil {
		return err
	}
	// gVisor keeps the backlog to itself; ss shows it as Send-Q.
	so.st.backlogs.Store(so.ep, backlog)
	return nil
}

// Accept waits for a connection on a listening socket and returns it with
// the peer's address, like accept(2). The new socket is blocking.
func (so *Socket) Accept() (*Socket, netip.AddrPort, error) {
	return so.AcceptContext(context.Background())
}

// AcceptContext is Accept that gives up with ctx's error when ctx ends.
func (so *Socket) AcceptContext(ctx context.Context) (*Socket, netip.AddrPort, error) {
	var (
		peer tcpip.FullAddress
		nep  tcpip.Endpoint
		nwq  *waiter.Queue
	)
	err := so.block(ctx, waiter.ReadableEvents, &so.rd, func() tcpip.Error {
		var terr tcpip.Error
		nep, nwq, terr = so.ep.Accept(&peer)
		return terr
	}, Errno)
	if err != nil {
		return nil, netip.AddrPort{}, sockErr(err)
	}
	c := newSocket(so.st, so.family, so.typ, so.proto, so.net, nep, nwq)
	return c, fromFull(peer, so.family), nil
}

// Connect connects the socket to addr, like connect(2). For a stream socket
// it blocks until the handshake finishes (or fails with ECONNREFUSED,
// ETIMEDOUT, ...) unless the socket is non-blocking, in which case it
// returns EINPROGRESS and the outcome is read later with SO_ERROR. For a
// datagram socket it sets the default destination and returns at once.
func (so *Socket) Connect(addr netip.AddrPort) error {
	return sockErr(so.connect(context.Background(), addr))
}

// ConnectContext is Connect that gives up when ctx ends, returning ctx's
// error. The socket is then in an unspecified state; close it.
func (so *Socket) ConnectContext(ctx context.Context, addr netip.AddrPort) error {
	return sockErr(so.connect(ctx, addr))
}

func (so *Socket) connect(ctx context.Context, addr netip.AddrPort) error {
	fa, err := so.toFull(addr)
	if err != nil {
		return err
	}
	if err := so.connectCheck(addr); err != nil {
		return err
	}
	terr := so.ep.Connect(fa)
	if _, ok := terr.(*tcpip.ErrConnectStarted); !ok {
		return errOrNil(Errno(terr))
	}
	if so.nonblock.Load() {
		return syscall.EINPROGRESS
	}
	e, ch := waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	so.wq.EventRegister(&e)
	defer so.wq.EventUnregister(&e)
	for {
		// A notification can race with the state change that caused it, so
		// the state, not the wakeup, decides.
		if st := tcp.EndpointState(so.ep.State()); st != tcp.StateSynSent && st != tcp.StateConnecting {
			return errOrNil(Errno(so.takeError()))
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-so.closing:
			return syscall.EBADF
		}
	}
}

// connectCheck reports the errors Linux gives before connecting where
// gVisor differs: EISCONN for a connected stream socket (gVisor accepts a
// repeated connect to the same peer) and ENETUNREACH for an IPv4-mapped
// peer on an IPV6_V6ONLY socket (gVisor says EHOSTUNREACH).
func (so *Socket) connectCheck(addr netip.AddrPort) error {
	if so.typ == SOCK_STREAM {
		if _, err := so.ep.GetRemoteAddress(); err == nil {
			return syscall.EISCONN
		}
	}
	if so.family == AF_INET6 && addr.Addr().Is4In6() && so.ep.SocketOptions().GetV6Only() {
		return syscall.ENETUNREACH
	}
	return nil
}

// Read reads from a connected socket. Unlike Recv it follows io.Reader: the
// end of the stream is (0, io.EOF).
func (so *Socket) Read(b []byte) (int, error) {
	n, _, err := so.recv(context.Background(), b, 0, false)
	if err == nil && n == 0 && len(b) > 0 && so.typ == SOCK_STREAM {
		return 0, io.EOF
	}
	return n, sockErr(err)
}

// Write writes to a connected socket. A blocking stream socket writes all
// of b unless an error occurs.
func (so *Socket) Write(b []byte) (int, error) {
	return so.bsdSend(b, 0, nil)
}

// Recv receives like recv(2): flags may include MSG_PEEK,
// MSG_DONTWAIT and MSG_WAITALL. The end of a stream is
// (0, nil), as in C.
func (so *Socket) Recv(b []byte, flags int) (int, error) {
	n, _, err := so.recv(context.Background(), b, flags, false)
	return n, sockErr(err)
}

// RecvFrom is Recv that also returns the sender's address.
func (so *Socket) RecvFrom(b []byte, flags int) (int, netip.AddrPort, error) {
	n, from, err := so.recv(context.Background(), b, flags, true)
	return n, from, sockErr(err)
}

// Send sends like send(2); flags may include MSG_DONTWAIT
// (MSG_NOSIGNAL is accepted: there are no signals to suppress).
func (so *Socket) Send(b []byte, flags int) (int, error) {
	return so.bsdSend(b, flags, nil)
}

// SendTo sends a datagram to addr, like sendto(2).
func (so *Socket) SendTo(b []byte, flags int, addr netip.AddrPort) (int, error) {
	fa, err := so.toFull(addr)
	if err != nil {
		return 0, err
	}
	return so.bsdSend(b, flags, &fa)
}

const (
	recvFlags = MSG_PEEK | MSG_DONTWAIT | MSG_WAITALL | MSG_NOSIGNAL
	sendFlags = MSG_DONTWAIT | MSG_NOSIGNAL
)

func (so *Socket) recv(ctx context.Context, b []byte, flags int, wantFrom bool) (int, netip.AddrPort, error) {
	if flags&^recvFlags != 0 {
		return 0, netip.AddrPort{}, syscall.EOPNOTSUPP
	}
	opts := tcpip.ReadOptions{Peek: flags&MSG_PEEK != 0, NeedRemoteAddr: wantFrom}
	waitAll := flags&MSG_WAITALL != 0 && !opts.Peek && so.typ == SOCK_STREAM
	var (
		total int
		from  tcpip.FullAddress
	)
	for {
		w := tcpip.SliceWriter(b[total:])
		var res tcpip.ReadResult
		err := so.blockIf(ctx, flags, waiter.ReadableEvents, &so.rd, func() tcpip.Error {
			var terr tcpip.Error
			res, terr = so.ep.Read(&w, opts)
			return terr
		}, errnoData)
		total += res.Count
		if res.Count > 0 || total == 0 {
			from = res.RemoteAddr
		}
		if err != nil {
			if total > 0 && so.typ == SOCK_STREAM {
				// Deliver what arrived; the error shows up on the next call.
				return total, fromFull(from, so.family), nil
			}
			return total, netip.AddrPort{}, err
		}
		if !waitAll || res.Count == 0 || total == len(b) {
			return total, fromFull(from, so.family), nil
		}
	}
}

func (so *Socket) send(b []byte, flags int, to *tcpip.FullAddress) (int, error) {
	if flags&^sendFlags != 0 {
		return 0, syscall.EOPNOTSUPP
	}
	var (
		r     sliceReader
		total int
	)
	r.reset(b)
	for {
		var n int64
		err := so.blockIf(context.Background(), flags, waiter.WritableEvents, &so.wd, func() tcpip.Error {
			var terr tcpip.Error
			n, terr = so.ep.Write(&r, tcpip.WriteOptions{To: to})
			return terr
		}, errnoData)
		total += int(n)
		if err != nil || so.typ != SOCK_STREAM || r.Len() == 0 {
			return total, err
		}
	}
}

// bsdSend is send with write(2)'s contract: a stream write that made
// progress reports the count and leaves the error for the next call.
// (io.Writer, which the net adapters follow, wants the error now.)
func (so *Socket) bsdSend(b []byte, flags int, to *tcpip.FullAddress) (int, error) {
	n, err := so.send(b, flags, to)
	if err != nil && n > 0 && so.typ == SOCK_STREAM {
		err = nil
	}
	return n, sockErr(err)
}

// Shutdown shuts down part of a full-duplex connection, like shutdown(2):
// how is SHUT_RD, SHUT_WR or SHUT_RDWR. SHUT_WR sends a FIN after
// the data already written.
func (so *Socket) Shutdown(how int) error {
	var flags tcpip.ShutdownFlags
	switch how {
	case SHUT_RD:
		flags = tcpip.ShutdownRead
	case SHUT_WR:
		flags = tcpip.ShutdownWrite
	case SHUT_RDWR:
		flags = tcpip.ShutdownRead | tcpip.ShutdownWrite
	default:
		return syscall.EINVAL
	}
	return errOrNil(Errno(so.ep.Shutdown(flags)))
}

// Close closes the socket, like close(2). A connected stream socket sends
// a FIN (or a RST if unread data remains or SO_LINGER is on with a zero
// timeout) and finishes the close in the background. Calls blocked on the
// socket return EBADF. Close is idempotent.
func (so *Socket) Close() error {
	so.closeOnce.Do(func() {
		close(so.closing)
		so.st.backlogs.Delete(so.ep)
		so.ep.Close()
		so.rd.Stop()
		so.wd.Stop()
	})
	return nil
}

// GetSockName returns the local address, like getsockname(2).
func (so *Socket) GetSockName() (netip.AddrPort, error) {
	fa, err := so.ep.GetLocalAddress()
	if err != nil {
		return netip.AddrPort{}, Errno(err)
	}
	return fromFull(fa, so.family), nil
}

// GetPeerName returns the peer's address, like getpeername(2); ENOTCONN if
// the socket is not connected.
func (so *Socket) GetPeerName() (netip.AddrPort, error) {
	fa, err := so.ep.GetRemoteAddress()
	if err != nil {
		return netip.AddrPort{}, Errno(err)
	}
	return fromFull(fa, so.family), nil
}

// SetDeadline sets both the read and write deadlines: blocking calls that
// are still waiting at t return EAGAIN (through the Go adapters,
// os.ErrDeadlineExceeded). The zero time means no deadline.
func (so *Socket) SetDeadline(t time.Time) error {
	so.rd.Set(t)
	so.wd.Set(t)
	return nil
}

// SetReadDeadline sets the deadline for Read, Recv, RecvFrom and Accept.
func (so *Socket) SetReadDeadline(t time.Time) error { so.rd.Set(t); return nil }

// SetWriteDeadline sets the deadline for Write, Send and SendTo.
func (so *Socket) SetWriteDeadline(t time.Time) error { so.wd.Set(t); return nil }

// errDeadline and errClosed are internal outcomes of block; the BSD face
// turns them into EAGAIN and EBADF, the net face into os.ErrDeadlineExceeded
// and net.ErrClosed.
var (
	errDeadline = errors.New("deadline exceeded")
	errClosed   = errors.New("socket closed")
)

// sockErr converts block's internal outcomes to errno values.
func sockErr(err error) error {
	switch err {
	case errDeadline:
		return syscall.EAGAIN
	case errClosed:
		return syscall.EBADF
	}
	return err
}

func (so *Socket) blockIf(ctx context.Context, flags int, mask waiter.EventMask, dl *deadline.Deadline, op func() tcpip.Error, conv func(tcpip.Error) syscall.Errno) error {
	if flags&MSG_DONTWAIT != 0 {
		return errOrNil(conv(op()))
	}
	return so.block(ctx, mask, dl, op, conv)
}

// block runs op until it stops reporting ErrWouldBlock, sleeping on the
// endpoint's wait queue for mask events in between. It registers with the
// queue only after a first failed attempt, so the fast path allocates
// nothing.
func (so *Socket) block(ctx context.Context, mask waiter.EventMask, dl *deadline.Deadline, op func() tcpip.Error, conv func(tcpip.Error) syscall.Errno) error {
	select {
	case <-so.closing:
		return errClosed
	default:
	}
	err := op()
	if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
		return errOrNil(conv(err))
	}
	if so.nonblock.Load() {
		return syscall.EAGAIN
	}
	e, ch := waiter.NewChannelEntry(mask | waiter.EventHUp | waiter.EventErr)
	so.wq.EventRegister(&e)
	defer so.wq.EventUnregister(&e)
	for {
		err = op()
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			return errOrNil(conv(err))
		}
		select {
		case <-ch:
		case <-dl.Done():
			return errDeadline
		case <-ctx.Done():
			return ctx.Err()
		case <-so.closing:
			return errClosed
		}
	}
}

// sliceReader is a minimal tcpip.Payloader over a byte slice that lives
// on the caller's stack.
type sliceReader struct{ b []byte }

func (r *sliceReader) reset(b []byte) { r.b = b }

// Read implements io.Reader.
func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// Len implements tcpip.Payloader.
func (r *sliceReader) Len() int { return len(r.b) }
