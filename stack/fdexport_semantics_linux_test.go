package stack_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/stacktest"
)

// TestExportedFDDifferences checks each difference from a kernel socket
// that Socket.File's documentation lists, on an exported TCP connection.
func TestExportedFDDifferences(t *testing.T) {
	stacktest.CheckLeaks(t)
	s, err := stacktest.NewLoopback(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := s.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := s.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("accept failed")
	}
	f, err := c.(*stack.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())

	// An unnamed socket's address is the family alone, which x/sys/unix
	// decodes as "" or "@".
	sa, err := unix.Getpeername(fd)
	if u, ok := sa.(*unix.SockaddrUnix); err != nil || !ok || (u.Name != "" && u.Name != "@") {
		t.Errorf("getpeername = %#v, %v; want an empty AF_UNIX address", sa, err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != unix.EOPNOTSUPP {
		t.Errorf("setsockopt TCP_NODELAY = %v, want EOPNOTSUPP", err)
	}
	if d, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); d != unix.AF_UNIX || err != nil {
		t.Errorf("SO_DOMAIN = %d, %v; want AF_UNIX", d, err)
	}

	// A reset from the peer reads as EOF, not ECONNRESET.
	srv.(*stack.TCPConn).SetLinger(0)
	srv.Close()
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
	buf := make([]byte, 16)
	n, err := unix.Read(fd, buf)
	if n != 0 || err != nil {
		t.Errorf("read after the peer's reset = %d, %v; want 0 (EOF)", n, err)
	}
	time.Sleep(10 * time.Millisecond)
	if _, err := unix.Write(fd, []byte("x")); err != syscall.EPIPE {
		t.Errorf("write after the peer's reset = %v, want EPIPE", err)
	}
}
