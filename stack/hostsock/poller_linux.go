package hostsock

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Poller dials host TCP connections and wakes their readers and writers.
// Create it with NewPoller; Close stops it.
type Poller struct {
	ep   *os.File // the epoll set; the runtime's poller watches it
	epfd int      // ep's descriptor (never ep.Fd(): that may make it blocking)
	rc   syscall.RawConn
	done chan struct{} // closed when the event loop has returned

	mu sync.Mutex // guards conns, next
	// conns are the registered connections by the id in their epoll
	// data. Ids are never reused, so an event for a connection that has
	// gone finds nothing rather than its descriptor number's next owner.
	// +checklocks:mu
	conns map[uint64]*Conn
	// +checklocks:mu
	next uint64
}

// NewPoller creates the epoll set and starts its event loop. It fails
// when the runtime cannot poll the set (the loop would then block a
// thread), and on systems other than Linux.
func NewPoller() (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Non-blocking, so that os.NewFile registers it with the runtime's
	// poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(fd), "hostsock-epoll")
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("hostsock: the runtime cannot poll an epoll descriptor: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &Poller{ep: f, epfd: fd, rc: rc, done: make(chan struct{}), conns: make(map[uint64]*Conn)}
	go p.loop()
	return p, nil
}

// Close stops the event loop and waits for it. Connections still open
// stop being woken; close them first.
func (p *Poller) Close() error {
	err := p.ep.Close()
	<-p.done
	return err
}

// loop collects events whenever the runtime's poller finds the epoll set
// readable, until Close. It stays inside one RawConn.Read, whose readiness
// is then never reset: an event that arrives after the last epoll_pwait
// makes the set readable again (epoll wakes those polling a set at every
// event it queues), and the wait returns at once. So a batch shorter than
// the buffer means the set was empty: no second epoll_pwait to find that
// out.
func (p *Poller) loop() {
	defer close(p.done)
	var events [64]unix.EpollEvent
	_ = p.rc.Read(func(fd uintptr) bool {
		for {
			n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&events[0])),
				uintptr(len(events)), 0, 0, 0)
			switch {
			case e == unix.EINTR:
				continue
			case e != 0:
				return true // the set is gone
			case n == 0:
				return false // wait until the set is readable again
			}
			p.dispatch(events[:n])
			if int(n) < len(events) {
				return false
			}
		}
	})
}

// dispatch wakes the waiters of each event's connection. Errors and
// hang-ups wake both directions: the next call reports them.
func (p *Poller) dispatch(evs []unix.EpollEvent) {
	const (
		readable = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
		writable = unix.EPOLLOUT | unix.EPOLLHUP | unix.EPOLLERR
	)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range evs {
		c := p.conns[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]
		if c == nil {
			continue
		}
		if ev.Events&readable != 0 {
			notify(c.readable)
		}
		if ev.Events&writable != 0 {
			notify(c.writable)
		}
	}
}

// notify leaves a wake-up in ch unless one is already there.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Events a connection is registered for: always readability, and
// writability only while a writer waits for it (or the handshake does).
// A connected socket is writable at once, and an edge-triggered
// registration that asks for it reports it at once: a wake-up of the loop,
// per connection, that nobody waits for.
const (
	eventsIn    = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET
	eventsInOut = eventsIn | unix.EPOLLOUT
)

// add registers c's descriptor for events under a fresh id.
func (p *Poller) add(c *Conn, events uint32) error {
	p.mu.Lock()
	p.next++
	c.id = p.next
	p.conns[c.id] = c
	p.mu.Unlock()
	if e := p.control(unix.EPOLL_CTL_ADD, c, events); e != 0 {
		p.forget(c.id)
		return os.NewSyscallError("epoll_ctl", e)
	}
	return nil
}

// control is epoll_ctl of c's descriptor with its id as the event data.
func (p *Poller) control(op int, c *Conn, events uint32) unix.Errno {
	ev := unix.EpollEvent{Events: events, Fd: int32(uint32(c.id)), Pad: int32(uint32(c.id >> 32))}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.fd < 0 {
		return unix.EBADF
	}
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(p.epfd), uintptr(op), uintptr(c.fd), uintptr(unsafe.Pointer(&ev)), 0, 0)
	return e
}

// forget drops id; its descriptor leaves the epoll set when it is closed.
func (p *Poller) forget(id uint64) {
	p.mu.Lock()
	delete(p.conns, id)
	p.mu.Unlock()
}

// DialContext dials a TCP address given as an IP literal and port
// ("192.0.2.1:80", "[2001:db8::1]:443"); network is "tcp", "tcp4" or
// "tcp6". It makes Poller an egress.Dialer.
func (p *Poller) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	raddr, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("hostsock: address %q is not IP:PORT: %w", address, err)}
	}
	c, err := p.DialTCP(ctx, raddr)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialTCP connects to raddr. ctx bounds the wait for the handshake; its
// error (context.DeadlineExceeded or Canceled) is wrapped in the
// *net.OpError returned.
func (p *Poller) DialTCP(ctx context.Context, raddr netip.AddrPort) (*Conn, error) {
	raddr = netip.AddrPortFrom(raddr.Addr().Unmap(), raddr.Port())
	fail := func(call string, e error) (*Conn, error) {
		if call != "" {
			e = os.NewSyscallError(call, e)
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(raddr), Err: e}
	}
	sa, salen, family := sockaddr(raddr)
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if e != 0 {
		return fail("socket", e)
	}
	c := newConn(p, int(fd), raddr)
	if err := c.setOptions(); err != nil {
		c.Close()
		return fail("", err)
	}
	_, _, e = unix.RawSyscall(unix.SYS_CONNECT, fd, uintptr(sa), uintptr(salen))
	if e != 0 && e != unix.EINPROGRESS && e != unix.EINTR {
		c.Close()
		return fail("connect", e)
	}
	// To a local listener the handshake has run inside connect(2) (the
	// loopback device delivers at once): connected already, nothing to
	// wait for.
	if c.connected() {
		err := p.add(c, eventsIn)
		if err == nil {
			err = c.readLocal()
		}
		if err != nil {
			c.Close()
			return fail("", err)
		}
		return c, nil
	}
	c.outArmed.Store(true)
	if err := p.add(c, eventsInOut); err != nil {
		c.Close()
		return fail("", err)
	}
	if err := c.awaitConnect(ctx); err != nil {
		c.Close()
		return fail("", err)
	}
	if err := c.readLocal(); err != nil {
		c.Close()
		return fail("", err)
	}
	return c, nil
}

// sockaddr returns a as a kernel socket address. The pointer is to heap
// memory the caller keeps alive until the call that uses it returns.
func sockaddr(a netip.AddrPort) (ptr unsafe.Pointer, size uintptr, family uintptr) {
	if a.Addr().Is4() {
		sa := &unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Addr().As4()}
		putPort(&sa.Port, a.Port())
		return unsafe.Pointer(sa), unsafe.Sizeof(*sa), unix.AF_INET
	}
	sa := &unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.Addr().As16()}
	putPort(&sa.Port, a.Port())
	if z := a.Addr().Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			sa.Scope_id = uint32(ifi.Index)
		}
	}
	return unsafe.Pointer(sa), unsafe.Sizeof(*sa), unix.AF_INET6
}

// putPort stores port in network byte order.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}
