package sandbox

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// isOpen reports whether fd is an open descriptor.
func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// tcpSockets is a fetch that makes real TCP sockets in this namespace and
// counts its calls and the sockets it made.
type tcpSockets struct {
	calls, made atomic.Int64
	fail        atomic.Bool
}

func (s *tcpSockets) fetch(family, n int) ([]int, error) {
	s.calls.Add(1)
	if s.fail.Load() {
		return nil, errors.New("init is gone")
	}
	var fds []int
	for range n {
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if err != nil {
			return fds, err
		}
		fds = append(fds, fd)
	}
	s.made.Add(int64(n))
	return fds, nil
}

// TestInnerPool: the first get fetches directly and starts a refill; the
// next ones come from the pool without a fetch; a failing source is
// reported by get; close closes what the pool holds and refuses later
// gets.
func TestInnerPool(t *testing.T) {
	src := &tcpSockets{}
	p := newInnerPool(src.fetch, 4)
	fd, err := p.get(unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	waitFor(t, "the pool to fill", func() bool { return p.held(unix.AF_INET) == 4 })
	calls := src.calls.Load()
	var got []int
	for range 2 {
		fd, err := p.get(unix.AF_INET)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); d != unix.AF_INET {
			t.Errorf("pooled socket's domain %d, want AF_INET", d)
		}
		got = append(got, fd)
	}
	if c := src.calls.Load(); c != calls {
		t.Errorf("two gets from a full pool made %d fetches, want none", c-calls)
	}
	for _, fd := range got {
		unix.Close(fd)
	}
	if p.held(unix.AF_INET6) != 0 {
		t.Errorf("the other family's pool filled without a get")
	}

	// Half the pool is left, so no refill has started: drain it with a
	// failing source, whose failure then shows.
	src.fail.Store(true)
	for n := p.held(unix.AF_INET); n > 0; n-- {
		fd, err := p.get(unix.AF_INET)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
	}
	if _, err := p.get(unix.AF_INET); err == nil {
		t.Errorf("get with an empty pool and a failing source succeeded")
	}
	src.fail.Store(false)
	if _, err := p.get(unix.AF_INET6); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the IPv6 pool to fill", func() bool { return p.held(unix.AF_INET6) == 4 })
	p.mu.Lock()
	held := append([]int(nil), p.ready[unix.AF_INET6]...)
	p.mu.Unlock()
	p.close()
	for _, fd := range held {
		if isOpen(fd) {
			t.Errorf("descriptor %d the pool held is open after close", fd)
		}
	}
	if _, err := p.get(unix.AF_INET); !errors.Is(err, ErrNoInner) {
		t.Errorf("get after close: %v, want ErrNoInner", err)
	}
}

// TestInnerPoolConcurrent: concurrent gets each get their own socket, and
// nothing is left open after close.
func TestInnerPoolConcurrent(t *testing.T) {
	src := &tcpSockets{}
	p := newInnerPool(src.fetch, 8)
	var mu sync.Mutex
	seen := map[int]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				fd, err := p.get(unix.AF_INET)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[fd] {
					t.Errorf("descriptor %d handed out twice at once", fd)
				}
				seen[fd] = true
				mu.Unlock()
				mu.Lock()
				delete(seen, fd)
				mu.Unlock()
				unix.Close(fd)
			}
		}()
	}
	wg.Wait()
	p.close()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestCheckInner: only an unconnected TCP socket of the family asked for
// passes.
func TestCheckInner(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	connected := func() int {
		fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		a := ln.Addr().(*net.TCPAddr).AddrPort()
		if err := unix.Connect(fd, sockaddr(a)); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	cases := []struct {
		name   string
		open   func() int
		family int
		ok     bool
	}{
		{"tcp4", func() int { fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0); return fd }, unix.AF_INET, true},
		{"tcp6", func() int { fd, _ := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0); return fd }, unix.AF_INET6, true},
		{"wrong family", func() int { fd, _ := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0); return fd }, unix.AF_INET, false},
		{"udp", func() int { fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0); return fd }, unix.AF_INET, false},
		{"sctp-like seqpacket unix", func() int { fd, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET, 0); return fd }, unix.AF_INET, false},
		{"a file", func() int { fd, _ := unix.Open("/dev/null", unix.O_RDONLY, 0); return fd }, unix.AF_INET, false},
		{"connected", connected, unix.AF_INET, false},
		{"sock_diag", func() int {
			fd, _ := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_SOCK_DIAG)
			return fd
		}, unix.AF_NETLINK, true},
		{"netlink route for sock_diag", func() int {
			fd, _ := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
			return fd
		}, unix.AF_NETLINK, false},
		{"tcp for sock_diag", func() int { fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0); return fd }, unix.AF_NETLINK, false},
		{"sock_diag for tcp", func() int {
			fd, _ := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_SOCK_DIAG)
			return fd
		}, unix.AF_INET, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fd := tc.open()
			if fd < 0 {
				t.Skip("cannot open the descriptor here")
			}
			defer unix.Close(fd)
			if err := checkInner(fd, tc.family); (err == nil) != tc.ok {
				t.Errorf("checkInner = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestInnerChannel: init's answer to a request carries the sockets asked
// for, fetchInner receives and checks them, and a bad request is answered
// with an error and no socket.
func TestInnerChannel(t *testing.T) {
	ours, theirs, err := innerPair()
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, _ := net.FileConn(theirs)
		theirs.Close()
		defer c.Close()
		buf := make([]byte, 512)
		for {
			n, err := c.Read(buf)
			if err != nil || n == 0 {
				return
			}
			answerInner(c.(*net.UnixConn), buf[:n], nil)
		}
	}()
	fds, err := fetchInner(ours, unix.AF_INET6, 3)
	if err != nil || len(fds) != 3 {
		t.Fatalf("fetchInner = %v, %v; want 3 sockets", fds, err)
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	diag, err := fetchInner(ours, unix.AF_NETLINK, 1)
	if err != nil || len(diag) != 1 {
		t.Fatalf("fetchInner(AF_NETLINK) = %v, %v; want one sock_diag socket", diag, err)
	}
	unix.Close(diag[0])
	if _, err := fetchInner(ours, unix.AF_NETLINK, 2); err == nil {
		t.Errorf("a request for 2 sock_diag sockets was answered with sockets")
	}
	if _, err := fetchInner(ours, 99, 1); err == nil {
		t.Errorf("a request for family 99 was answered with sockets")
	}
	if _, err := fetchInner(ours, unix.AF_INET, maxInnerBatch+1); err == nil {
		t.Errorf("a request beyond the batch limit was answered with sockets")
	}
	ours.Close()
	<-done
}

// TestAnswerInnerOutside: an init that could not enter the command's
// namespace answers with its error and no socket.
func TestAnswerInnerOutside(t *testing.T) {
	ours, theirs, err := innerPair()
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	c, err := net.FileConn(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 512)
		n, _ := c.Read(buf)
		answerInner(c.(*net.UnixConn), buf[:n], errors.New("enter the command's network namespace: EPERM"))
	}()
	if _, err := fetchInner(ours, unix.AF_INET, 1); err == nil || !strings.Contains(err.Error(), "EPERM") {
		t.Errorf("fetchInner = %v; want init's error", err)
	}
}

// TestConnectInner: a socket connects through connectInner from the
// loopback address; a closed port is refused with ECONNREFUSED.
func TestConnectInner(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dst := ln.Addr().(*net.TCPAddr).AddrPort()
	lo := netip.MustParseAddr("127.0.0.1")
	fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := connectInner(ctx, fd, lo, dst)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != lo {
		t.Errorf("the server saw %v, want %v", got, lo)
	}
	c.Write([]byte("x"))
	b := make([]byte, 1)
	if _, err := s.Read(b); err != nil || b[0] != 'x' {
		t.Errorf("read %q, %v", b, err)
	}
	c.Close()
	s.Close()
	ln.Close()
	fd, _ = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if _, err := connectInner(ctx, fd, lo, dst); !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("connect to a closed port: %v, want ECONNREFUSED", err)
	}
	if isOpen(fd) {
		t.Errorf("the refused socket's descriptor is still open")
	}
}

// TestConnectInnerSlow: a connect that does not complete within the
// blocking try (the listener's backlog is full, its SYN is dropped) is
// waited for under the poller and ends with the context.
func TestConnectInnerSlow(t *testing.T) {
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	lo := netip.MustParseAddr("127.0.0.1")
	if err := unix.Bind(lfd, sockaddr(netip.AddrPortFrom(lo, 0))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(lfd)
	dst := netip.AddrPortFrom(lo, uint16(sa.(*unix.SockaddrInet4).Port))
	// Fill the backlog with connections nobody accepts.
	var fillers []int
	defer func() {
		for _, fd := range fillers {
			unix.Close(fd)
		}
	}()
	for range 4 {
		fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		unix.Connect(fd, sockaddr(dst))
		fillers = append(fillers, fd)
	}
	time.Sleep(50 * time.Millisecond)
	fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := connectInner(ctx, fd, lo, dst)
	if err == nil {
		c.Close()
		t.Skip("the kernel accepted the connection past a full backlog")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("connect past a full backlog: %v, want the context's deadline", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("connect gave up after %v, want the context's 400ms", d)
	}
	if isOpen(fd) {
		t.Errorf("the descriptor is still open")
	}
}

// TestDialInnerAttached: an attached namespace has no init to make
// sockets; DialInner says so and HasInner is false.
func TestDialInnerAttached(t *testing.T) {
	sb := &Sandbox{attached: true}
	if sb.HasInner() {
		t.Error("HasInner on an attached sandbox")
	}
	if _, err := sb.DialInner(context.Background(), netip.MustParseAddrPort("10.0.2.100:80")); !errors.Is(err, ErrNoInner) {
		t.Errorf("DialInner on an attached sandbox: %v, want ErrNoInner", err)
	}
}

// TestWithDiag: the sock_diag socket is fetched from init once, kept for
// the next call, and closed with the channel, after which WithSockDiag
// fails with ErrNoInner.
func TestWithDiag(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: init's thread enters a network namespace (here its own)")
	}
	nsfd, err := openNetNS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs, err := innerPair()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveInner(theirs, nsfd, nil)
	}()
	sb := &Sandbox{inner: newInnerSockets(ours)}
	var first, second int
	if err := sb.WithSockDiag(func(fd int) error { first = fd; return checkInner(fd, unix.AF_NETLINK) }); err != nil {
		t.Fatalf("first WithSockDiag: %v", err)
	}
	if err := sb.WithSockDiag(func(fd int) error { second = fd; return nil }); err != nil || second != first {
		t.Fatalf("second WithSockDiag: fd %d (first %d), %v; want the kept socket", second, first, err)
	}
	sb.inner.close()
	<-done
	if _, err := unix.GetsockoptInt(first, unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil {
		t.Errorf("sock_diag socket %d still open after close", first)
	}
	if err := sb.WithSockDiag(func(int) error { return nil }); !errors.Is(err, ErrNoInner) {
		t.Errorf("WithSockDiag after close = %v, want ErrNoInner", err)
	}
	if err := (&Sandbox{}).WithSockDiag(func(int) error { return nil }); !errors.Is(err, ErrNoInner) {
		t.Errorf("WithSockDiag without init = %v, want ErrNoInner", err)
	}
}
