package relay

import (
	"errors"
	"net"
)

// Conn is a stream connection that can half-close: *net.TCPConn,
// *stack.TCPConn, gVisor's gonet.TCPConn.
type Conn interface {
	net.Conn
	CloseWrite() error
}

// Aborter is implemented by connections that reset without a socket option
// (a gVisor endpoint wrapped by its owner). Reset prefers it.
type Aborter interface {
	Abort()
}

// Reset closes c so that its peer sees a reset rather than a FIN: Abort
// when c has it, else SO_LINGER 0 then Close. A connection that can do
// neither is just closed.
func Reset(c net.Conn) {
	switch rc := c.(type) {
	case Aborter:
		rc.Abort()
	case interface{ SetLinger(int) error }:
		_ = rc.SetLinger(0)
	}
	_ = c.Close()
}

// Pipe relays a and b in both directions until both have ended, then
// closes both. It maps each way's ending onto the other side as TCP would
// see it through a router:
//
//   - EOF from one side half-closes the other (CloseWrite), and the other
//     direction goes on;
//   - a read error (a reset, or the connection closed under us) resets the
//     other side;
//   - a write error (the destination reset) resets the source.
//
// Closing either connection from outside (Group.Close) ends both
// directions.
func Pipe(a, b Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		oneWay(b, a)
	}()
	oneWay(a, b)
	<-done
	_ = a.Close()
	_ = b.Close()
}

// oneWay copies src to dst and passes src's ending on. Two kernel sockets
// (a spliced forward) take the same Copy: splice(2) through a pipe
// (TCPConn.ReadFrom) moved 15-20 % less over loopback in bench/run.sh's
// forward rows, at the same CPU per GiB and latency.
func oneWay(dst, src Conn) {
	err := Copy(writerOf(dst), readerOf(src))
	switch {
	case err == nil:
		_ = closeWrite(dst)
	case errors.Is(err, ErrWrite):
		Reset(src)
	default:
		Reset(dst)
	}
}

// AsConn returns c as a Conn. A connection that cannot half-close (a
// Dialer's wrapper, say) is closed in full where Pipe would half-close it.
func AsConn(c net.Conn) Conn {
	if hc, ok := c.(Conn); ok {
		return hc
	}
	return fullCloser{c}
}

type fullCloser struct{ net.Conn }

func (f fullCloser) CloseWrite() error { return f.Close() }

// Abort passes a reset on to the wrapped connection.
func (f fullCloser) Abort() { Reset(f.Conn) }
