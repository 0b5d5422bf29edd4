package stack

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/fdpass"
)

// bridgeBufSize is the copy buffer per direction; 64 KiB is the largest
// chunk gVisor's buffer pool hands out and a full unix socket write.
const bridgeBufSize = 64 << 10

// hupPoll is how often a half-closed stream bridge checks whether the
// holder has closed the fd entirely, which the kernel signals only
// through POLLHUP.
const hupPoll = 50 * time.Millisecond

// File exports the socket as a file descriptor for a child process, C
// code or another process (over SCM_RIGHTS): a connected (or accepted) TCP
// socket, a UDP socket (bound or connected), or a listening TCP socket.
// From then on the bridge owns the socket: do not use it or close it
// yourself; closing the returned file (in every process holding it)
// closes the socket.
//
// The fd is not a kernel TCP or UDP socket: it is one end of a unix
// socketpair (AF_UNIX), and two goroutines copy between the other end and
// the stack socket. read, write, send, recv, poll, epoll, select, shutdown
// and close work as on the real socket, with these formats:
//
//   - TCP: a SOCK_STREAM socket. Bytes written are sent on the connection;
//     shutdown(fd, SHUT_WR) sends a FIN; the peer's FIN reads as EOF (poll
//     reports POLLRDHUP).
//   - UDP: a SOCK_SEQPACKET socket, one message per datagram. On a
//     connected socket messages are bare payloads. On an unconnected one
//     each message, both ways, starts with an address header: one byte
//     holding the address length (4 or 16), the port (2 bytes, big
//     endian), then the address; the payload follows (AppendAddrHeader and
//     ParseAddrHeader encode and decode it). Zero-length
//     datagrams are not delivered (a zero-length read means EOF).
//   - A TCP listener: a SOCK_SEQPACKET socket that delivers, per accepted
//     connection, one message whose data is the peer's address as text
//     ("198.18.0.1:40000" or "[::1]:40000") and whose SCM_RIGHTS control
//     message carries the connection's exported fd (AcceptExported reads
//     one). Closing the fd closes
//     the listener.
//
// Calls that behave differently from a kernel socket, because the fd is a
// unix socket:
//
//   - getpeername and getsockname return an empty AF_UNIX address, not
//     the IP endpoints (the Go side has them: LocalAddr, RemoteAddr).
//   - setsockopt and getsockopt at IPPROTO_TCP (TCP_NODELAY, keepalive,
//     ...) fail with EOPNOTSUPP; set them on the stack socket before
//     exporting it. SO_DOMAIN reads AF_UNIX.
//   - A reset, or the stack closing, reads as EOF, not ECONNRESET: the
//     pair is closed, so poll reports POLLHUP and writes fail with EPIPE.
//   - Back-pressure holds both ways but through extra buffers: each
//     direction copies through one 64 KiB buffer, blocking on the
//     socketpair's and the stack socket's bounded buffers, so a slow
//     reader slows the sender, a little later than on a kernel socket.
func (so *Socket) File() (*os.File, error) {
	switch {
	case so.typ == SOCK_DGRAM && so.proto == IPPROTO_UDP:
		return so.exportDatagram()
	case so.typ != SOCK_STREAM:
		return nil, syscall.EOPNOTSUPP
	case so.ep.SocketOptions().GetAcceptConn():
		return so.exportListener()
	}
	if _, err := so.ep.GetRemoteAddress(); err != nil {
		return nil, syscall.ENOTCONN
	}
	return so.exportStream()
}

// File exports the connection as a unix stream socket (see Socket.File).
// The TCPConn must not be used afterwards.
func (c *TCPConn) File() (*os.File, error) {
	f, err := c.so.File()
	return f, c.err("file", err)
}

// File exports the socket as a unix seqpacket socket (see Socket.File).
// The UDPConn must not be used afterwards.
func (c *UDPConn) File() (*os.File, error) {
	f, err := c.so.File()
	return f, c.err("file", nil, err)
}

// File exports the listener as a unix socket that passes one fd per
// accepted connection (see Socket.File). The TCPListener must not be used
// afterwards.
func (l *TCPListener) File() (*os.File, error) {
	f, err := l.so.File()
	if err != nil {
		return nil, opErr("file", "tcp", nil, l.addr, err)
	}
	return f, nil
}

// socketpair returns our end as a *net.UnixConn (non-blocking, on Go's
// poller) and theirs as a blocking *os.File, as a C program expects.
func socketpair(typ int, name string) (*net.UnixConn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, typ|SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	ours := os.NewFile(uintptr(fds[0]), name)
	c, err := net.FileConn(ours) // dups the fd
	ours.Close()
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), name), nil
}

func (so *Socket) fileName(kind string) string {
	la, _ := so.GetSockName()
	if ra, err := so.GetPeerName(); err == nil {
		return fmt.Sprintf("tunstack-%s:%v->%v", kind, la, ra)
	}
	return fmt.Sprintf("tunstack-%s:%v", kind, la)
}

// streamBridge copies between a TCP socket and a unix stream socket.
type streamBridge struct {
	so   *Socket
	uc   *net.UnixConn
	done chan struct{} // closed when the stack-to-fd direction ends

	mu sync.Mutex // guards finished, closed
	// +checklocks:mu
	finished int
	// +checklocks:mu
	closed bool
}

func (so *Socket) exportStream() (*os.File, error) {
	uc, f, err := socketpair(SOCK_STREAM, so.fileName("tcp"))
	if err != nil {
		return nil, err
	}
	b := &streamBridge{so: so, uc: uc, done: make(chan struct{})}
	go b.toFD()
	go b.fromFD()
	return f, nil
}

// toFD copies stack to fd. The peer's FIN becomes shutdown(SHUT_WR) on our
// end; a reset or any failure closes everything.
func (b *streamBridge) toFD() {
	defer close(b.done)
	buf := make([]byte, bridgeBufSize)
	for {
		n, err := b.so.Read(buf)
		if n > 0 {
			if _, werr := b.uc.Write(buf[:n]); werr != nil {
				b.fail("write to fd", werr) // the holder closed its end or shut down reading
				return
			}
		}
		switch {
		case err == io.EOF:
			b.uc.CloseWrite()
			b.finish()
			return
		case err != nil:
			b.fail("read from stack", err)
			return
		}
	}
}

// fromFD copies fd to stack. The holder's shutdown(SHUT_WR) (or close)
// becomes a FIN.
func (b *streamBridge) fromFD() {
	buf := make([]byte, bridgeBufSize)
	for {
		n, err := b.uc.Read(buf)
		if n > 0 {
			if _, werr := b.so.send(buf[:n], 0, nil); werr != nil {
				b.fail("write to stack", werr)
				return
			}
		}
		switch {
		case err == io.EOF:
			b.so.Shutdown(SHUT_WR)
			b.watchHangup()
			b.finish()
			return
		case err != nil:
			b.fail("read from fd", err)
			return
		}
	}
}

// watchHangup waits, after the holder stopped writing, until either the
// other direction ends or the holder closes the fd entirely (POLLHUP); a
// half-closed connection whose peer stays silent would otherwise keep the
// bridge forever after the holder is gone.
func (b *streamBridge) watchHangup() {
	raw, err := b.uc.SyscallConn()
	if err != nil {
		return
	}
	t := time.NewTicker(hupPoll)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
		}
		hup := false
		raw.Control(func(fd uintptr) {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
			if n, _ := unix.Poll(pfd, 0); n > 0 && pfd[0].Revents&unix.POLLHUP != 0 {
				hup = true
			}
		})
		if hup {
			b.abort()
			return
		}
	}
}

// finish records a direction's orderly end; after both, everything is
// closed (with a FIN already sent both ways).
func (b *streamBridge) finish() {
	b.mu.Lock()
	b.finished++
	last := b.finished == 2
	b.mu.Unlock()
	if last {
		b.abort()
	}
}

// fail ends the bridge after an error, logging it at debug level: resets
// and holders closing early are normal events, not faults.
func (b *streamBridge) fail(op string, err error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if !closed {
		b.so.st.log.Debug("stack: fd bridge closed", "op", op, "err", err)
	}
	b.abort()
}

// abort closes both ends; blocked calls on either return and their
// goroutines exit.
func (b *streamBridge) abort() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.mu.Unlock()
	b.uc.Close()
	b.so.Close()
}

// datagramBridge copies datagrams between a UDP socket and a unix
// seqpacket socket.
type datagramBridge struct {
	so        *Socket
	uc        *net.UnixConn
	connected bool
	once      sync.Once
}

func (so *Socket) exportDatagram() (*os.File, error) {
	uc, f, err := socketpair(syscall.SOCK_SEQPACKET, so.fileName("udp"))
	if err != nil {
		return nil, err
	}
	_, perr := so.GetPeerName()
	b := &datagramBridge{so: so, uc: uc, connected: perr == nil}
	go b.toFD()
	go b.fromFD()
	return f, nil
}

func (b *datagramBridge) toFD() {
	buf := make([]byte, MaxAddrHeaderLen+bridgeBufSize)
	for {
		off := 0
		if !b.connected {
			off = MaxAddrHeaderLen
		}
		n, from, err := b.so.RecvFrom(buf[off:], 0)
		if err != nil {
			if err == syscall.ECONNREFUSED {
				continue // an ICMP error for an earlier send; UDP goes on
			}
			b.close()
			return
		}
		msg := buf[off : off+n]
		if !b.connected {
			hdr := AppendAddrHeader(nil, from)
			start := off - len(hdr)
			copy(buf[start:], hdr)
			msg = buf[start : off+n]
		}
		if _, err := b.uc.Write(msg); err != nil {
			b.close()
			return
		}
	}
}

func (b *datagramBridge) fromFD() {
	buf := make([]byte, MaxAddrHeaderLen+bridgeBufSize)
	for {
		n, err := b.uc.Read(buf)
		if err != nil {
			b.close() // EOF: the holder closed or shut down its end
			return
		}
		msg := buf[:n]
		var serr error
		if b.connected {
			_, serr = b.so.Send(msg, 0)
		} else if to, payload, err := ParseAddrHeader(msg); err == nil {
			_, serr = b.so.SendTo(payload, 0, to)
		}
		if serr == syscall.EBADF {
			b.close()
			return
		}
		// Other send errors drop the datagram, as UDP would.
	}
}

func (b *datagramBridge) close() {
	b.once.Do(func() {
		b.uc.Close()
		b.so.Close()
	})
}

// listenerBridge accepts connections and passes each, exported, over a
// unix seqpacket socket.
type listenerBridge struct {
	so   *Socket
	uc   *net.UnixConn
	once sync.Once
}

func (so *Socket) exportListener() (*os.File, error) {
	uc, f, err := socketpair(syscall.SOCK_SEQPACKET, so.fileName("listen"))
	if err != nil {
		return nil, err
	}
	b := &listenerBridge{so: so, uc: uc}
	go b.accept()
	go b.watch()
	return f, nil
}

func (b *listenerBridge) accept() {
	defer b.close()
	for {
		c, peer, err := b.so.Accept()
		if err != nil {
			if errors.Is(err, syscall.ECONNABORTED) {
				continue
			}
			return
		}
		if err := b.pass(c, peer); err != nil {
			return
		}
	}
}

func (b *listenerBridge) pass(c *Socket, peer netip.AddrPort) error {
	f, err := c.exportStream()
	if err != nil {
		c.Close()
		return nil // keep accepting; this connection is lost
	}
	defer f.Close() // the copy in flight keeps the connection open
	return fdpass.Send(b.uc, []byte(peer.String()), f)
}

// AcceptExported receives the next connection from ln, the holder's end
// of an exported listener (see Socket.File): the peer's address and the
// connection's exported fd. It fails when the listener is closed.
func AcceptExported(ln *net.UnixConn) (netip.AddrPort, *os.File, error) {
	buf := make([]byte, 64) // "[" + 45-byte IPv6 text + "]:65535"
	for {
		n, f, err := fdpass.ReceiveFile(ln, buf, "tunstack-conn")
		switch {
		case errors.Is(err, io.EOF), err == nil && f == nil && n == 0:
			return netip.AddrPort{}, nil, errors.New("accept from exported listener: the listener was closed")
		case err != nil:
			return netip.AddrPort{}, nil, fmt.Errorf("accept from exported listener: %w", err)
		case f == nil:
			continue // a message without a connection carries nothing to run
		}
		peer, err := netip.ParseAddrPort(string(buf[:n]))
		if err != nil {
			f.Close()
			return netip.AddrPort{}, nil, fmt.Errorf("accept from exported listener: peer address %q: %w", buf[:n], err)
		}
		return peer, f, nil
	}
}

// watch closes the listener when the holder closes its end: the holder
// never writes, so a read returns only at EOF.
func (b *listenerBridge) watch() {
	var buf [1]byte
	for {
		if _, err := b.uc.Read(buf[:]); err != nil {
			b.close()
			return
		}
	}
}

func (b *listenerBridge) close() {
	b.once.Do(func() {
		b.uc.Close()
		b.so.Close()
	})
}
