package stack_test

import (
	"fmt"
	"net/netip"
	"syscall"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/stacktest"
)

// BSD sockets on a stack with only a loopback interface.
func ExampleStack_Socket() {
	s, err := stacktest.NewLoopback(stack.Options{})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	l, _ := s.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	defer l.Close()
	l.SetSockOpt(syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	l.Bind(netip.MustParseAddrPort("127.0.0.1:7"))
	l.Listen(8)

	c, _ := s.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	defer c.Close()
	if err := c.Connect(netip.MustParseAddrPort("127.0.0.1:7")); err != nil {
		panic(err)
	}
	srv, peer, _ := l.Accept()
	defer srv.Close()
	c.Send([]byte("hello"), 0)
	c.Shutdown(syscall.SHUT_WR)

	buf := make([]byte, 16)
	n, _ := srv.Recv(buf, syscall.MSG_WAITALL)
	fmt.Printf("%q from loopback: %v\n", buf[:n], peer.Addr().IsLoopback())

	// Errors are errno values, as from the kernel.
	x, _ := s.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	defer x.Close()
	err = x.Connect(netip.MustParseAddrPort("127.0.0.1:8"))
	fmt.Println(err == syscall.ECONNREFUSED)
	// Output:
	// "hello" from loopback: true
	// true
}
