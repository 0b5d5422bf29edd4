package hostsock

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/internal/deadline"
)

// Conn is a host TCP connection dialed by a Poller. It implements
// net.Conn, CloseWrite and SetLinger, as *net.TCPConn does. Reads and
// writes may run concurrently with each other and with Close.
type Conn struct {
	p            *Poller
	id           uint64 // set by Poller.add
	laddr, raddr *net.TCPAddr

	// readable and writable hold a wake-up from the event loop, left
	// when the socket may have become readable (writable) since the
	// last wait; a reader or writer that finds EAGAIN waits for one.
	readable, writable chan struct{}
	closing            chan struct{} // closed by Close: waiters return
	closeOnce          sync.Once
	// outArmed is set once the registration includes writability (a
	// connect that waited, or a write that found the buffer full); it
	// stays.
	outArmed atomic.Bool

	rd, wd deadline.Deadline

	mu sync.RWMutex // guards fd: system calls on it hold the read lock
	// fd is the socket, -1 once closed. It is closed only under the
	// write lock, so no call in flight can reach a reused number.
	// +checklocks:mu
	fd int
}

func newConn(p *Poller, fd int, raddr netip.AddrPort) *Conn {
	return &Conn{
		p: p, fd: fd, raddr: net.TCPAddrFromAddrPort(raddr),
		readable: make(chan struct{}, 1), writable: make(chan struct{}, 1),
		closing: make(chan struct{}),
	}
}

// keepAlive are net.Dialer's defaults (KeepAliveConfig with zero
// fields): first probe after 15 s idle, then every 15 s, 9 probes.
const (
	keepAliveIdle     = 15
	keepAliveInterval = 15
	keepAliveCount    = 9
)

// setOptions sets what net.Dialer sets on a TCP connection: no Nagle
// delay, keep-alive probes.
func (c *Conn) setOptions() error {
	opts := [...]struct{ level, name, value int }{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdle},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveInterval},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
	}
	for _, o := range opts {
		v := int32(o.value)
		if e := c.setsockopt(o.level, o.name, unsafe.Pointer(&v), 4); e != 0 {
			return os.NewSyscallError("setsockopt", e)
		}
	}
	return nil
}

func (c *Conn) setsockopt(level, name int, v unsafe.Pointer, size uintptr) unix.Errno {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.fd < 0 {
		return unix.EBADF
	}
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(c.fd), uintptr(level), uintptr(name), uintptr(v), size, 0)
	return e
}

// awaitConnect waits for a non-blocking connect to finish.
func (c *Conn) awaitConnect(ctx context.Context) error {
	for {
		select {
		case <-c.writable:
		case <-ctx.Done():
			return ctx.Err()
		}
		var soerr int32
		size := uint32(4)
		if e := c.sockcall(unix.SYS_GETSOCKOPT, unix.SOL_SOCKET, unix.SO_ERROR, uintptr(unsafe.Pointer(&soerr)), uintptr(unsafe.Pointer(&size))); e != 0 {
			return os.NewSyscallError("getsockopt", e)
		}
		switch e := unix.Errno(soerr); e {
		case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
		case 0, unix.EISCONN:
			// Connected only once the peer has a name (as net.Dialer
			// checks: a wake-up may be spurious).
			if c.connected() {
				return nil
			}
		default:
			return os.NewSyscallError("connect", e)
		}
	}
}

// connected reports whether the socket has a peer, which a connecting
// one has once its handshake is done.
func (c *Conn) connected() bool {
	var sa unix.RawSockaddrAny
	n := uint32(unsafe.Sizeof(sa))
	return c.sockcall(unix.SYS_GETPEERNAME, uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&n)), 0, 0) == 0
}

// readLocal fills in the local address.
func (c *Conn) readLocal() error {
	var sa unix.RawSockaddrAny
	n := uint32(unsafe.Sizeof(sa))
	if e := c.sockcall(unix.SYS_GETSOCKNAME, uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&n)), 0, 0); e != 0 {
		return os.NewSyscallError("getsockname", e)
	}
	switch sa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		c.laddr = &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: port(a.Port)}
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa))
		c.laddr = &net.TCPAddr{IP: net.IP(append([]byte(nil), a.Addr[:]...)), Port: port(a.Port)}
	}
	return nil
}

// port reads a port stored in network byte order.
func port(p uint16) int {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return int(b[0])<<8 | int(b[1])
}

// sockcall makes a raw call whose first argument is the socket.
func (c *Conn) sockcall(trap, a2, a3, a4, a5 uintptr) unix.Errno {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.fd < 0 {
		return unix.EBADF
	}
	_, _, e := unix.RawSyscall6(trap, uintptr(c.fd), a2, a3, a4, a5, 0)
	return e
}

// Read implements net.Conn: io.EOF once the peer has shut its side.
func (c *Conn) Read(b []byte) (int, error) {
	if c.isClosed() {
		return 0, c.opError("read", net.ErrClosed)
	}
	if c.rd.Expired() {
		return 0, c.opError("read", os.ErrDeadlineExceeded)
	}
	if len(b) == 0 {
		return 0, nil
	}
	for {
		n, e := c.transfer(unix.SYS_RECVFROM, b, unix.MSG_DONTWAIT)
		switch {
		case e == 0 && n == 0:
			return 0, io.EOF
		case e == 0:
			return n, nil
		case e == unix.EINTR:
			continue
		case e != unix.EAGAIN:
			return 0, c.opError("read", os.NewSyscallError("recvfrom", e))
		}
		if err := c.await(c.readable, &c.rd); err != nil {
			return 0, c.opError("read", err)
		}
	}
}

// Write implements net.Conn: it returns once all of b is written or an
// error stops it.
func (c *Conn) Write(b []byte) (int, error) {
	if c.isClosed() {
		return 0, c.opError("write", net.ErrClosed)
	}
	done := 0
	for done < len(b) {
		if c.wd.Expired() {
			return done, c.opError("write", os.ErrDeadlineExceeded)
		}
		n, e := c.transfer(unix.SYS_SENDTO, b[done:], unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		switch {
		case e == 0:
			done += n
			continue
		case e == unix.EINTR:
			continue
		case e != unix.EAGAIN:
			return done, c.opError("write", os.NewSyscallError("sendto", e))
		}
		if !c.outArmed.Load() {
			// Ask for writability now; the registration reports it at
			// once if the buffer has drained meanwhile.
			if e := c.p.control(unix.EPOLL_CTL_MOD, c, eventsInOut); e != 0 {
				return done, c.opError("write", os.NewSyscallError("epoll_ctl", e))
			}
			c.outArmed.Store(true)
		}
		if err := c.await(c.writable, &c.wd); err != nil {
			return done, c.opError("write", err)
		}
	}
	return done, nil
}

// transfer is one recvfrom or sendto of b.
func (c *Conn) transfer(trap uintptr, b []byte, flags int) (int, unix.Errno) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.fd < 0 {
		return 0, unix.EBADF
	}
	n, _, e := unix.RawSyscall6(trap, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(flags), 0, 0)
	return int(n), e
}

// await waits for a wake-up on ch, Close or the deadline.
func (c *Conn) await(ch chan struct{}, d *deadline.Deadline) error {
	select {
	case <-ch:
		return nil
	case <-c.closing:
		return net.ErrClosed
	case <-d.Done():
		return os.ErrDeadlineExceeded
	}
}

func (c *Conn) isClosed() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: err}
}

// CloseWrite shuts down the sending side (the peer reads EOF).
func (c *Conn) CloseWrite() error {
	if e := c.sockcall(unix.SYS_SHUTDOWN, unix.SHUT_WR, 0, 0, 0); e != 0 {
		if c.isClosed() {
			return c.opError("close", net.ErrClosed)
		}
		return c.opError("close", os.NewSyscallError("shutdown", e))
	}
	return nil
}

// SetLinger sets SO_LINGER as (*net.TCPConn).SetLinger does: sec < 0
// lingers in the background (the default), 0 discards unsent data and
// resets the connection on Close, > 0 lingers up to sec seconds.
func (c *Conn) SetLinger(sec int) error {
	l := unix.Linger{}
	if sec >= 0 {
		l.Onoff, l.Linger = 1, int32(sec)
	}
	if e := c.setsockopt(unix.SOL_SOCKET, unix.SO_LINGER, unsafe.Pointer(&l), unsafe.Sizeof(l)); e != 0 {
		return c.opError("set", os.NewSyscallError("setsockopt", e))
	}
	return nil
}

// Close closes the connection; waiting reads and writes return
// net.ErrClosed. A second Close returns net.ErrClosed too.
func (c *Conn) Close() error {
	err := c.opError("close", net.ErrClosed)
	c.closeOnce.Do(func() {
		err = nil
		close(c.closing)
		c.mu.Lock()
		fd := c.fd
		c.fd = -1
		c.mu.Unlock()
		c.rd.Stop()
		c.wd.Stop()
		if c.id != 0 {
			c.p.forget(c.id)
		}
		// Closing also takes it out of the epoll set.
		if _, _, e := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0); e != 0 {
			err = c.opError("close", os.NewSyscallError("close", e))
		}
	})
	return err
}

// LocalAddr implements net.Conn (a *net.TCPAddr).
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr implements net.Conn (a *net.TCPAddr).
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rd.Set(t)
	c.wd.Set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rd.Set(t)
	return nil
}

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wd.Set(t)
	return nil
}
