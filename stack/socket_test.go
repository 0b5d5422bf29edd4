package stack_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/stacktest"
)

// sock is the socket surface the comparison cases use; *stack.Socket
// provides it through tunSock and the kernel through kernSock.
type sock interface {
	Bind(netip.AddrPort) error
	Listen(backlog int) error
	Accept() (sock, error)
	Connect(netip.AddrPort) error
	Recv(b []byte, flags int) (int, error)
	Send(b []byte, flags int) (int, error)
	Shutdown(how int) error
	Close() error
	SetSockOpt(level, opt, v int) error
	GetSockOpt(level, opt int) (int, error)
	SetSockOptLinger(*syscall.Linger) error
	GetSockName() (netip.AddrPort, error)
	GetPeerName() (netip.AddrPort, error)
	SetRecvTimeout(time.Duration) error
	SetNonblock(bool)
}

type socketFactory func(domain, typ int) (sock, error)

type tunSock struct{ *stack.Socket }

func (s tunSock) Accept() (sock, error) {
	c, _, err := s.Socket.Accept()
	if err != nil {
		return nil, err
	}
	return tunSock{c}, nil
}

func (s tunSock) SetRecvTimeout(d time.Duration) error {
	return s.SetReadDeadline(time.Now().Add(d))
}

type kernSock struct {
	fd     int
	family int
}

func kernSocket(domain, typ int) (sock, error) {
	fd, err := syscall.Socket(domain, typ|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &kernSock{fd: fd, family: domain}, nil
}

func (k *kernSock) sa(ap netip.AddrPort) syscall.Sockaddr {
	if k.family == syscall.AF_INET {
		return &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	return &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func fromSA(sa syscall.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

func (k *kernSock) Bind(ap netip.AddrPort) error    { return syscall.Bind(k.fd, k.sa(ap)) }
func (k *kernSock) Listen(n int) error              { return syscall.Listen(k.fd, n) }
func (k *kernSock) Connect(ap netip.AddrPort) error { return syscall.Connect(k.fd, k.sa(ap)) }
func (k *kernSock) Shutdown(how int) error          { return syscall.Shutdown(k.fd, how) }
func (k *kernSock) Close() error                    { return syscall.Close(k.fd) }
func (k *kernSock) SetSockOpt(l, o, v int) error    { return syscall.SetsockoptInt(k.fd, l, o, v) }
func (k *kernSock) GetSockOpt(l, o int) (int, error) {
	return syscall.GetsockoptInt(k.fd, l, o)
}
func (k *kernSock) SetSockOptLinger(l *syscall.Linger) error {
	return syscall.SetsockoptLinger(k.fd, syscall.SOL_SOCKET, syscall.SO_LINGER, l)
}
func (k *kernSock) SetRecvTimeout(d time.Duration) error {
	tv := syscall.NsecToTimeval(d.Nanoseconds())
	return syscall.SetsockoptTimeval(k.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
}
func (k *kernSock) SetNonblock(on bool) { syscall.SetNonblock(k.fd, on) }
func (k *kernSock) Accept() (sock, error) {
	fd, _, err := syscall.Accept4(k.fd, syscall.SOCK_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &kernSock{fd: fd, family: k.family}, nil
}
func (k *kernSock) Recv(b []byte, flags int) (int, error) {
	for {
		n, _, err := syscall.Recvfrom(k.fd, b, flags)
		if err == syscall.EINTR {
			continue
		}
		return n, err
	}
}
func (k *kernSock) Send(b []byte, flags int) (int, error) {
	return len(b), syscall.Sendto(k.fd, b, flags|syscall.MSG_NOSIGNAL, nil)
}
func (k *kernSock) GetSockName() (netip.AddrPort, error) {
	sa, err := syscall.Getsockname(k.fd)
	return fromSA(sa), err
}
func (k *kernSock) GetPeerName() (netip.AddrPort, error) {
	sa, err := syscall.Getpeername(k.fd)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return fromSA(sa), nil
}

// env is what a case gets: a socket factory and the loopback addresses.
type env struct {
	t      *testing.T
	socket socketFactory
	trace  []string
	closer []func()
}

func (e *env) log(format string, args ...any) {
	e.trace = append(e.trace, fmt.Sprintf(format, args...))
}

// res records the outcome of a call as "what: ok" or "what: <errno>".
func (e *env) res(what string, err error) {
	if err == nil {
		e.log("%s: ok", what)
		return
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		e.log("%s: %s", what, errnoName(errno))
		return
	}
	e.log("%s: %v", what, err)
}

func errnoName(e syscall.Errno) string {
	names := map[syscall.Errno]string{
		syscall.ECONNREFUSED: "ECONNREFUSED", syscall.ECONNRESET: "ECONNRESET", syscall.EADDRINUSE: "EADDRINUSE",
		syscall.EAGAIN: "EAGAIN", syscall.EPIPE: "EPIPE", syscall.ENOTCONN: "ENOTCONN", syscall.EINVAL: "EINVAL",
		syscall.EISCONN: "EISCONN", syscall.EOPNOTSUPP: "EOPNOTSUPP", syscall.ENETUNREACH: "ENETUNREACH",
		syscall.EAFNOSUPPORT: "EAFNOSUPPORT", syscall.ETIMEDOUT: "ETIMEDOUT", syscall.EINPROGRESS: "EINPROGRESS",
		syscall.ENOPROTOOPT: "ENOPROTOOPT", syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL",
	}
	if n, ok := names[e]; ok {
		return n
	}
	if e == 0 {
		return "0"
	}
	return fmt.Sprintf("errno %d (%v)", int(e), e)
}

func (e *env) sock(domain, typ int) sock {
	s, err := e.socket(domain, typ)
	if err != nil {
		e.t.Fatalf("socket(%d, %d): %v", domain, typ, err)
	}
	e.closer = append(e.closer, func() { s.Close() })
	return s
}

// listener returns a listening socket on loopback and its address.
func (e *env) listener(domain int) (sock, netip.AddrPort) {
	l := e.sock(domain, syscall.SOCK_STREAM)
	if err := l.Bind(loop(domain, 0)); err != nil {
		e.t.Fatal(err)
	}
	if err := l.Listen(16); err != nil {
		e.t.Fatal(err)
	}
	a, _ := l.GetSockName()
	return l, a
}

// pair returns a connected client and the accepted server side.
func (e *env) pair(domain int) (client, server sock) {
	l, addr := e.listener(domain)
	c := e.sock(domain, syscall.SOCK_STREAM)
	if err := c.Connect(addr); err != nil {
		e.t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		e.t.Fatal(err)
	}
	e.closer = append(e.closer, func() { s.Close() })
	return c, s
}

func (e *env) recv(what string, s sock, flags int) {
	b := make([]byte, 64)
	n, err := s.Recv(b, flags)
	if err != nil {
		e.res(what, err)
		return
	}
	if n == 0 {
		e.log("%s: EOF", what)
		return
	}
	e.log("%s: %q", what, b[:n])
}

func loop(domain int, port uint16) netip.AddrPort {
	if domain == syscall.AF_INET6 {
		return netip.AddrPortFrom(netip.IPv6Loopback(), port)
	}
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
}

// freePort returns a loopback port with nothing bound to it (it was just
// bound and released).
func (e *env) freePort(domain int) uint16 {
	s, err := e.socket(domain, syscall.SOCK_STREAM)
	if err != nil {
		e.t.Fatal(err)
	}
	defer s.Close()
	s.Bind(loop(domain, 0))
	a, _ := s.GetSockName()
	return a.Port()
}

const (
	v4 = syscall.AF_INET
	v6 = syscall.AF_INET6
)

// socketCases run the same calls on kernel and tunstack sockets; both
// must produce want.
var socketCases = []struct {
	name string
	run  func(e *env)
	want []string
}{
	{
		name: "refused",
		run: func(e *env) {
			c := e.sock(v4, syscall.SOCK_STREAM)
			e.res("connect", c.Connect(loop(v4, e.freePort(v4))))
		},
		want: []string{"connect: ECONNREFUSED"},
	},
	{
		name: "refused6",
		run: func(e *env) {
			c := e.sock(v6, syscall.SOCK_STREAM)
			e.res("connect", c.Connect(loop(v6, e.freePort(v6))))
		},
		want: []string{"connect: ECONNREFUSED"},
	},
	{
		name: "recv timeout",
		run: func(e *env) {
			c, _ := e.pair(v4)
			c.SetRecvTimeout(30 * time.Millisecond)
			e.recv("recv", c, 0)
		},
		want: []string{"recv: EAGAIN"},
	},
	{
		name: "dontwait and peek",
		run: func(e *env) {
			c, s := e.pair(v4)
			e.recv("recv dontwait", c, syscall.MSG_DONTWAIT)
			s.Send([]byte("hello"), 0)
			time.Sleep(20 * time.Millisecond)
			e.recv("peek", c, syscall.MSG_PEEK)
			e.recv("recv", c, 0)
		},
		want: []string{"recv dontwait: EAGAIN", `peek: "hello"`, `recv: "hello"`},
	},
	{
		name: "reset by linger 0",
		run: func(e *env) {
			c, s := e.pair(v4)
			e.res("linger", s.SetSockOptLinger(&syscall.Linger{Onoff: 1, Linger: 0}))
			s.Close()
			time.Sleep(20 * time.Millisecond)
			e.recv("recv", c, 0)
			e.recv("recv again", c, 0)
			_, err := c.Send([]byte("x"), 0)
			e.res("send", err)
		},
		want: []string{"linger: ok", "recv: ECONNRESET", "recv again: EOF", "send: EPIPE"},
	},
	{
		name: "reset by close with unread data",
		run: func(e *env) {
			c, s := e.pair(v4)
			c.Send([]byte("unread"), 0)
			time.Sleep(20 * time.Millisecond)
			s.Close()
			time.Sleep(20 * time.Millisecond)
			e.recv("recv", c, 0)
		},
		want: []string{"recv: ECONNRESET"},
	},
	{
		name: "half-close",
		run: func(e *env) {
			c, s := e.pair(v4)
			c.Send([]byte("request"), 0)
			e.res("shutdown wr", c.Shutdown(syscall.SHUT_WR))
			e.recv("server recv", s, syscall.MSG_WAITALL)
			e.recv("server recv", s, 0)
			_, err := s.Send([]byte("reply"), 0)
			e.res("server send", err)
			e.recv("client recv", c, 0)
			_, err = c.Send([]byte("late"), 0)
			e.res("client send", err)
			e.res("server shutdown wr", s.Shutdown(syscall.SHUT_WR))
			e.recv("client recv", c, 0)
		},
		want: []string{"shutdown wr: ok", `server recv: "request"`, "server recv: EOF", "server send: ok",
			`client recv: "reply"`, "client send: EPIPE", "server shutdown wr: ok", "client recv: EOF"},
	},
	{
		name: "shutdown rd",
		run: func(e *env) {
			c, _ := e.pair(v4)
			e.res("shutdown rd", c.Shutdown(syscall.SHUT_RD))
			e.recv("recv", c, 0)
		},
		want: []string{"shutdown rd: ok", "recv: EOF"},
	},
	{
		name: "not connected",
		run: func(e *env) {
			c := e.sock(v4, syscall.SOCK_STREAM)
			_, err := c.GetPeerName()
			e.res("getpeername", err)
			e.res("shutdown", c.Shutdown(syscall.SHUT_WR))
			_, err = c.Send([]byte("x"), 0)
			e.res("send", err)
		},
		want: []string{"getpeername: ENOTCONN", "shutdown: ENOTCONN", "send: EPIPE"},
	},
	{
		name: "connect twice",
		run: func(e *env) {
			c, _ := e.pair(v4)
			a, _ := c.GetPeerName()
			e.res("connect again", c.Connect(a))
		},
		want: []string{"connect again: EISCONN"},
	},
	{
		name: "accept without listen, listen on udp",
		run: func(e *env) {
			s := e.sock(v4, syscall.SOCK_STREAM)
			s.Bind(loop(v4, 0))
			_, err := s.Accept()
			e.res("accept", err)
			u := e.sock(v4, syscall.SOCK_DGRAM)
			e.res("listen udp", u.Listen(1))
		},
		want: []string{"accept: EINVAL", "listen udp: EOPNOTSUPP"},
	},
	{
		name: "address in use",
		run: func(e *env) {
			_, a := e.listener(v4)
			s := e.sock(v4, syscall.SOCK_STREAM)
			e.res("bind", s.Bind(a))
			s2 := e.sock(v4, syscall.SOCK_STREAM)
			e.res("reuseaddr", s2.SetSockOpt(syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1))
			e.res("bind reuseaddr", s2.Bind(a))
		},
		want: []string{"bind: EADDRINUSE", "reuseaddr: ok", "bind reuseaddr: EADDRINUSE"},
	},
	{
		name: "reuseaddr both unbound",
		run: func(e *env) {
			s1 := e.sock(v4, syscall.SOCK_STREAM)
			s1.SetSockOpt(syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			e.res("bind 1", s1.Bind(loop(v4, 0)))
			a, _ := s1.GetSockName()
			s2 := e.sock(v4, syscall.SOCK_STREAM)
			s2.SetSockOpt(syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			e.res("bind 2", s2.Bind(a))
			v, err := s2.GetSockOpt(syscall.SOL_SOCKET, syscall.SO_REUSEADDR)
			e.log("getsockopt reuseaddr: %d %v", v, err)
		},
		want: []string{"bind 1: ok", "bind 2: ok", "getsockopt reuseaddr: 1 <nil>"},
	},
	{
		name: "reuseaddr over time-wait",
		run: func(e *env) {
			l := e.sock(v4, syscall.SOCK_STREAM)
			// The TIME-WAIT socket inherits SO_REUSEADDR from the listener;
			// without it the kernel refuses the later bind too.
			l.SetSockOpt(syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			l.Bind(loop(v4, 0))
			l.Listen(4)
			a, _ := l.GetSockName()
			c := e.sock(v4, syscall.SOCK_STREAM)
			c.Connect(a)
			s, _ := l.Accept()
			s.Close() // active close: the server's port enters TIME-WAIT
			time.Sleep(20 * time.Millisecond)
			c.Close()
			l.Close()
			time.Sleep(20 * time.Millisecond)
			n := e.sock(v4, syscall.SOCK_STREAM)
			e.res("bind", n.Bind(a))
			n2 := e.sock(v4, syscall.SOCK_STREAM)
			n2.SetSockOpt(syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			e.res("bind reuseaddr", n2.Bind(a))
		},
		want: []string{"bind: EADDRINUSE", "bind reuseaddr: ok"},
	},
	{
		name: "reuseport",
		run: func(e *env) {
			s1 := e.sock(v4, syscall.SOCK_STREAM)
			s1.SetSockOpt(syscall.SOL_SOCKET, 0xf, 1)
			s1.Bind(loop(v4, 0))
			e.res("listen 1", s1.Listen(4))
			a, _ := s1.GetSockName()
			s2 := e.sock(v4, syscall.SOCK_STREAM)
			s2.SetSockOpt(syscall.SOL_SOCKET, 0xf, 1)
			e.res("bind 2", s2.Bind(a))
			e.res("listen 2", s2.Listen(4))
		},
		want: []string{"listen 1: ok", "bind 2: ok", "listen 2: ok"},
	},
	{
		name: "v6only",
		run: func(e *env) {
			port := e.freePort(v6)
			s6 := e.sock(v6, syscall.SOCK_STREAM)
			e.res("v6only", s6.SetSockOpt(syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1))
			e.res("bind [::]", s6.Bind(netip.AddrPortFrom(netip.IPv6Unspecified(), port)))
			s4 := e.sock(v4, syscall.SOCK_STREAM)
			e.res("bind 0.0.0.0", s4.Bind(netip.AddrPortFrom(netip.IPv4Unspecified(), port)))
			c := e.sock(v6, syscall.SOCK_STREAM)
			c.SetSockOpt(syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1)
			e.res("connect v4-mapped", c.Connect(netip.MustParseAddrPort("[::ffff:127.0.0.1]:1")))
		},
		want: []string{"v6only: ok", "bind [::]: ok", "bind 0.0.0.0: ok", "connect v4-mapped: ENETUNREACH"},
	},
	{
		name: "dual-stack",
		run: func(e *env) {
			port := e.freePort(v6)
			s6 := e.sock(v6, syscall.SOCK_STREAM)
			e.res("v6only off", s6.SetSockOpt(syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0))
			e.res("bind [::]", s6.Bind(netip.AddrPortFrom(netip.IPv6Unspecified(), port)))
			e.res("listen", s6.Listen(4))
			s4 := e.sock(v4, syscall.SOCK_STREAM)
			e.res("bind 0.0.0.0", s4.Bind(netip.AddrPortFrom(netip.IPv4Unspecified(), port)))
			c := e.sock(v4, syscall.SOCK_STREAM)
			e.res("connect v4", c.Connect(loop(v4, port)))
			a, err := s6.Accept()
			e.res("accept", err)
			if err == nil {
				p, _ := a.GetPeerName()
				e.log("peer is v4: %v", p.Addr().Is4())
				a.Close()
			}
		},
		want: []string{"v6only off: ok", "bind [::]: ok", "listen: ok", "bind 0.0.0.0: EADDRINUSE",
			"connect v4: ok", "accept: ok", "peer is v4: true"},
	},
	{
		name: "udp",
		run: func(e *env) {
			s := e.sock(v4, syscall.SOCK_DGRAM)
			s.Bind(loop(v4, 0))
			a, _ := s.GetSockName()
			c := e.sock(v4, syscall.SOCK_DGRAM)
			e.res("connect", c.Connect(a))
			c.Send([]byte("one"), 0)
			c.Send([]byte("two"), 0)
			e.recv("recv", s, 0)
			e.recv("recv", s, 0)
			e.recv("recv dontwait", s, syscall.MSG_DONTWAIT)
			v, _ := c.GetSockOpt(syscall.SOL_SOCKET, syscall.SO_BROADCAST)
			e.res("broadcast", c.SetSockOpt(syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1))
			v2, _ := c.GetSockOpt(syscall.SOL_SOCKET, syscall.SO_BROADCAST)
			e.log("broadcast %d -> %d", v, v2)
		},
		want: []string{"connect: ok", `recv: "one"`, `recv: "two"`, "recv dontwait: EAGAIN", "broadcast: ok", "broadcast 0 -> 1"},
	},
	{
		name: "udp refused",
		run: func(e *env) {
			u := e.sock(v4, syscall.SOCK_DGRAM)
			u.Bind(loop(v4, 0))
			a, _ := u.GetSockName()
			u.Close()
			c := e.sock(v4, syscall.SOCK_DGRAM)
			c.Connect(a)
			c.Send([]byte("x"), 0)
			time.Sleep(30 * time.Millisecond)
			c.SetRecvTimeout(50 * time.Millisecond)
			e.recv("recv", c, 0)
		},
		want: []string{"recv: ECONNREFUSED"},
	},
	{
		// Linux clears the pending error when SO_ERROR reads it, and a
		// blocking connect that reports the error consumes it too.
		name: "SO_ERROR read twice",
		run: func(e *env) {
			closed := loop(v4, e.freePort(v4))
			c := e.sock(v4, syscall.SOCK_STREAM)
			c.SetNonblock(true)
			e.res("nonblocking connect", c.Connect(closed))
			time.Sleep(50 * time.Millisecond)
			for _, read := range []string{"first", "second"} {
				v, err := c.GetSockOpt(syscall.SOL_SOCKET, syscall.SO_ERROR)
				e.log("so_error %s: %s %v", read, errnoName(syscall.Errno(v)), err)
			}
			b := e.sock(v4, syscall.SOCK_STREAM)
			e.res("blocking connect", b.Connect(closed))
			v, err := b.GetSockOpt(syscall.SOL_SOCKET, syscall.SO_ERROR)
			e.log("so_error after: %s %v", errnoName(syscall.Errno(v)), err)
		},
		want: []string{"nonblocking connect: EINPROGRESS", "so_error first: ECONNREFUSED <nil>",
			"so_error second: 0 <nil>", "blocking connect: ECONNREFUSED", "so_error after: 0 <nil>"},
	},
	{
		name: "tcp options",
		run: func(e *env) {
			c, _ := e.pair(v4)
			for _, o := range []struct {
				name       string
				level, opt int
				v          int
			}{
				{"nodelay", syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
				{"keepalive", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
				{"keepidle", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 30},
				{"keepintvl", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 5},
				{"keepcnt", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 4},
				{"ttl", syscall.IPPROTO_IP, syscall.IP_TTL, 33},
			} {
				err := c.SetSockOpt(o.level, o.opt, o.v)
				v, gerr := c.GetSockOpt(o.level, o.opt)
				e.log("%s: set %v get %d %v", o.name, err, v, gerr)
			}
			v, err := c.GetSockOpt(syscall.SOL_SOCKET, syscall.SO_ERROR)
			e.log("so_error: %d %v", v, err)
			e.res("bogus", c.SetSockOpt(syscall.IPPROTO_TCP, 9999, 1))
		},
		want: []string{"nodelay: set <nil> get 1 <nil>", "keepalive: set <nil> get 1 <nil>",
			"keepidle: set <nil> get 30 <nil>", "keepintvl: set <nil> get 5 <nil>", "keepcnt: set <nil> get 4 <nil>",
			"ttl: set <nil> get 33 <nil>", "so_error: 0 <nil>", "bogus: ENOPROTOOPT"},
	},
}

// TestSocketsMatchKernel runs each case on kernel loopback sockets and on
// a tunstack loopback stack and expects the same trace from both.
func TestSocketsMatchKernel(t *testing.T) {
	stacktest.CheckLeaks(t)
	st, err := stacktest.NewLoopback(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	impls := []struct {
		name   string
		socket socketFactory
	}{
		{"kernel", kernSocket},
		{"tunstack", func(d, typ int) (sock, error) {
			s, err := st.Socket(d, typ, 0)
			if err != nil {
				return nil, err
			}
			return tunSock{s}, nil
		}},
	}
	for _, tc := range socketCases {
		for _, impl := range impls {
			t.Run(tc.name+"/"+impl.name, func(t *testing.T) {
				e := &env{t: t, socket: impl.socket}
				defer func() {
					for _, c := range e.closer {
						c()
					}
				}()
				tc.run(e)
				if got, want := strings.Join(e.trace, "\n"), strings.Join(tc.want, "\n"); got != want {
					t.Errorf("trace:\n%s\nwant:\n%s", got, want)
				}
			})
		}
	}
}
