package stack_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/stacktest"
)

// isTimeout reports whether err is a net.Error timeout that is also
// os.ErrDeadlineExceeded, as the net package's deadline errors are.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}

func TestDeadlines(t *testing.T) {
	stacktest.CheckLeaks(t)
	_, a, b, _ := stacktest.NewPair(t, stacktest.Options{})
	ln, err := b.Stack.Listen("tcp", ":80")
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
	}()
	c, err := a.Stack.Dial("tcp", "198.18.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := <-accepted
	defer srv.Close()

	cases := []struct {
		name string
		run  func() error
	}{
		{"read", func() error {
			c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
			_, err := c.Read(make([]byte, 1))
			return err
		}},
		{"read past deadline", func() error {
			c.SetReadDeadline(time.Now().Add(-time.Second))
			_, err := c.Read(make([]byte, 1))
			return err
		}},
		{"write with nobody reading", func() error {
			c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			buf := make([]byte, 1<<20)
			for {
				if _, err := c.Write(buf); err != nil {
					return err
				}
			}
		}},
		{"accept", func() error {
			l := ln.(*stack.TCPListener)
			l.SetDeadline(time.Now().Add(30 * time.Millisecond))
			defer l.SetDeadline(time.Time{})
			_, err := l.Accept()
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.run()
			if !isTimeout(err) {
				t.Fatalf("err = %v, want a timeout", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	// Clearing the deadline makes the connection usable again.
	c.SetDeadline(time.Time{})
	srv.Write([]byte("x"))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read after clearing deadline: %v", err)
	}
}

// TestCloseUnblocks: Close wakes blocked calls with net.ErrClosed.
func TestCloseUnblocks(t *testing.T) {
	stacktest.CheckLeaks(t)
	_, a, b, _ := stacktest.NewPair(t, stacktest.Options{})
	ln, _ := b.Stack.Listen("tcp", ":80")
	errc := make(chan error, 1)
	go func() { _, err := ln.Accept(); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	ln.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept after close: %v", err)
	}
	pc, _ := a.Stack.ListenPacket("udp", ":9")
	go func() { _, _, err := pc.ReadFrom(make([]byte, 10)); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	pc.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

// TestUserTimeout: with the link cut, unacknowledged data makes the
// connection fail with ETIMEDOUT once TCP_USER_TIMEOUT passes.
func TestUserTimeout(t *testing.T) {
	stacktest.CheckLeaks(t)
	_, a, b, l := stacktest.NewPair(t, stacktest.Options{})
	ln, _ := b.Stack.Listen("tcp", ":80")
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	c, err := a.Stack.DialTCP(context.Background(), netipZero, mustAP("198.18.0.2:80"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Socket().SetSockOpt(stack.IPPROTO_TCP, stack.TCP_USER_TIMEOUT, 300); err != nil {
		t.Fatal(err)
	}
	l.Partition()
	c.Write([]byte("lost"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("read = %v, want ETIMEDOUT", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%v is not a net.Error timeout", err)
	}
}

// TestStackCloseEndsBridges: closing the stack closes exported fds and
// stops their bridges.
func TestStackCloseEndsBridges(t *testing.T) {
	stacktest.CheckLeaks(t)
	s, c, srv := loopPair(t)
	defer c.Close()
	f, err := srv.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s.Close()
	if n, err := f.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read after stack close = %d, %v; want EOF", n, err)
	}
}
