package hostsock

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The runtime's own poller (an epoll set and an eventfd) opens with
	// the first network descriptor: open it before any count.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	goleak.VerifyTestMain(m)
}

// poller returns a Poller closed when the test ends, after checking that
// the test left no descriptor open.
func poller(t *testing.T) *Poller {
	t.Helper()
	before := openFDs(t)
	p, err := NewPoller()
	if err != nil {
		t.Fatalf("NewPoller: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Poller.Close: %v", err)
		}
		if after := openFDs(t); after != before {
			t.Errorf("open descriptors: %d before, %d after", before, after)
		}
	})
	return p
}

// openFDs counts the sockets and epoll sets the process holds (what a
// Poller opens; the test runtime opens other files of its own).
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting descriptors: %v", err)
	}
	n := 0
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		if strings.HasPrefix(l, "socket:") || l == "anon_inode:[eventpoll]" {
			n++
		}
	}
	return n
}

// listen returns a loopback listener of the given network ("tcp4" or
// "tcp6") and the address to dial it at; accepted connections go to
// serve, each in its own goroutine, and are closed when the test ends.
func listen(t *testing.T, network string, serve func(net.Conn)) netip.AddrPort {
	t.Helper()
	host := "127.0.0.1:0"
	if network == "tcp6" {
		host = "[::1]:0"
	}
	ln, err := net.Listen(network, host)
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func dial(t *testing.T, p *Poller, a netip.AddrPort) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := p.DialTCP(ctx, a)
	if err != nil {
		t.Fatalf("DialTCP %v: %v", a, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func echo(c net.Conn) { io.Copy(c, c) }

// TestBytesIntact sends 8 MiB to an echo server and reads it back while
// writing, over IPv4 and IPv6, with small socket buffers so that writes
// come back partial and EAGAIN and both directions wait on the poller
// (a connection dialed to loopback is connected at once and registered
// for readability only: the first full buffer asks for writability).
func TestBytesIntact(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			p := poller(t)
			c := dial(t, p, listen(t, network, echo))
			if got, want := c.RemoteAddr().String(), c.raddr.String(); got != want || c.LocalAddr() == nil {
				t.Fatalf("addresses: local %v remote %v", c.LocalAddr(), c.RemoteAddr())
			}
			if err := c.setsockopt(syscall.SOL_SOCKET, syscall.SO_SNDBUF, unsafe.Pointer(ptr(4096)), 4); err != 0 {
				t.Fatal(err)
			}
			want := make([]byte, 8<<20)
			rand.Read(want)
			errc := make(chan error, 1)
			go func() {
				_, err := c.Write(want)
				if err == nil {
					err = c.CloseWrite()
				}
				errc <- err
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("write: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes back, want the %d written", len(got), len(want))
			}
			if !c.outArmed.Load() {
				t.Error("no write waited for buffer space: writability was never asked for")
			}
		})
	}
}

// TestManyConnections runs request/response on 64 connections at once,
// so that one epoll_pwait carries events of many.
func TestManyConnections(t *testing.T) {
	p := poller(t)
	a := listen(t, "tcp4", echo)
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for i := range 64 {
		c := dial(t, p, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte{byte(i), byte(i >> 8), 7}
			for range 50 {
				if _, err := c.Write(msg); err != nil {
					errc <- err
					return
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
					errc <- errors.Join(err, errors.New("echo mismatch"))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

// TestEndings checks how a connection ends, seen from each side.
func TestEndings(t *testing.T) {
	p := poller(t)
	peerErr := make(chan error, 1)
	tests := []struct {
		name  string
		serve func(net.Conn) // the peer
		act   func(*Conn) error
		check func(t *testing.T, err error)
	}{
		{
			name:  "peer shuts its side: EOF",
			serve: func(c net.Conn) { c.(*net.TCPConn).CloseWrite(); io.Copy(io.Discard, c) },
			act:   func(c *Conn) error { _, err := c.Read(make([]byte, 8)); return err },
			check: func(t *testing.T, err error) {
				if err != io.EOF {
					t.Errorf("read: %v, want io.EOF", err)
				}
			},
		},
		{
			name:  "peer resets: ECONNRESET",
			serve: resetAfterByte,
			act: func(c *Conn) error {
				c.Write([]byte{1})
				_, err := c.Read(make([]byte, 8))
				return err
			},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("read: %v, want ECONNRESET", err)
				}
			},
		},
		{
			name: "CloseWrite: the peer reads EOF, then our read gets its answer",
			serve: func(c net.Conn) {
				b, _ := io.ReadAll(c)
				c.Write(append(b, '!'))
			},
			act: func(c *Conn) error {
				c.Write([]byte("hi"))
				if err := c.CloseWrite(); err != nil {
					return err
				}
				b, err := io.ReadAll(c)
				if string(b) != "hi!" {
					return errors.Join(err, errors.New("answer "+string(b)))
				}
				return err
			},
			check: func(t *testing.T, err error) {
				if err != nil {
					t.Error(err)
				}
			},
		},
		{
			name: "SetLinger(0) then Close: the peer reads ECONNRESET",
			serve: func(c net.Conn) {
				_, err := c.Read(make([]byte, 8))
				peerErr <- err
			},
			act: func(c *Conn) error {
				if err := c.SetLinger(0); err != nil {
					return err
				}
				return c.Close()
			},
			check: func(t *testing.T, err error) {
				if err != nil {
					t.Errorf("Close: %v", err)
				}
				if err := <-peerErr; !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("the peer read %v, want ECONNRESET", err)
				}
			},
		},
		{
			name:  "writing to a peer that reset: EPIPE or ECONNRESET, no SIGPIPE",
			serve: resetAfterByte,
			act: func(c *Conn) error {
				c.Write([]byte{1})
				time.Sleep(50 * time.Millisecond)
				var err error
				for i := 0; i < 100 && err == nil; i++ {
					_, err = c.Write(make([]byte, 64<<10))
				}
				return err
			},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("write: %v, want EPIPE or ECONNRESET", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, p, listen(t, "tcp4", tt.serve))
			tt.check(t, tt.act(c))
		})
	}
}

// resetAfterByte reads a byte, then resets the connection.
func resetAfterByte(c net.Conn) {
	c.Read(make([]byte, 1))
	c.(*net.TCPConn).SetLinger(0)
}

// TestCloseWakesWaiters: Close ends a read and a write that wait, with
// net.ErrClosed, and later calls fail the same way.
func TestCloseWakesWaiters(t *testing.T) {
	p := poller(t)
	block := make(chan struct{})
	c := dial(t, p, listen(t, "tcp4", func(net.Conn) { <-block }))
	defer close(block)
	errc := make(chan error, 2)
	go func() { _, err := c.Read(make([]byte, 1)); errc <- err }()
	go func() {
		var err error
		for err == nil {
			_, err = c.Write(make([]byte, 1<<20))
		}
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond) // both wait: nothing to read, buffers full
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range 2 {
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Errorf("waiting call ended with %v, want net.ErrClosed", err)
		}
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}

// TestDeadlines: an expired deadline fails a waiting read and write with
// os.ErrDeadlineExceeded (a timeout), and a cleared one lets them go on.
func TestDeadlines(t *testing.T) {
	p := poller(t)
	c := dial(t, p, listen(t, "tcp4", func(c net.Conn) {
		time.Sleep(300 * time.Millisecond)
		c.Write([]byte("late"))
		io.Copy(io.Discard, c)
	}))
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 8))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with the deadline still passed: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	b := make([]byte, 8)
	n, err := io.ReadAtLeast(c, b, 4)
	if err != nil || string(b[:n]) != "late" {
		t.Fatalf("read after clearing the deadline: %q, %v", b[:n], err)
	}
	c.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past its deadline: %v", err)
	}
}

// TestDialErrors: a refused dial says ECONNREFUSED; one that gets no
// answer ends with its context, as a timeout; neither leaves a descriptor
// open (checked by poller's cleanup).
func TestDialErrors(t *testing.T) {
	p := poller(t)
	// A port nobody listens on: take one, then free it.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()

	ctx := context.Background()
	if _, err := p.DialTCP(ctx, refused); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial to a closed port: %v, want ECONNREFUSED", err)
	}
	if _, err := p.DialContext(ctx, "udp", refused.String()); err == nil {
		t.Errorf("dial of network udp succeeded")
	}
	if _, err := p.DialContext(ctx, "tcp", "localhost:80"); err == nil {
		t.Errorf("dial of a host name succeeded")
	}

	// A listener with a full accept queue drops further SYNs: the dial
	// waits until its context ends.
	full := fullListener(t)
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = p.DialTCP(tctx, full)
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("dial to a listener that never answers: %v, want a timeout", err)
	}
}

// fullListener returns the address of a loopback listener whose accept
// queue (backlog 0) is filled by one connection nobody accepts.
func fullListener(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.AddrPortFrom(netip.AddrFrom4(sa.(*syscall.SockaddrInet4).Addr), uint16(sa.(*syscall.SockaddrInet4).Port))
	first, err := net.Dial("tcp4", a.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	return a
}

func ptr(v int32) *int32 { return &v }
