package relay

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestRawIOKind checks which connections Copy reaches through raw system
// calls: kernel stream sockets, and nothing else.
func TestRawIOKind(t *testing.T) {
	tc, _ := tcpPair(t)
	uc, _ := unixPair(t)
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	tests := []struct {
		name string
		c    Conn
		raw  bool
	}{
		{"tcp socket", tc, true},
		{"unix stream socket", uc, true},
		{"in-memory pipe", AsConn(p1), false},
		{"a type wrapping a tcp socket", wrapped{tc}, false},
	}
	for _, tt := range tests {
		_, r := readerOf(tt.c).(*rawReader)
		_, w := writerOf(tt.c).(*rawWriter)
		if r != tt.raw || w != tt.raw {
			t.Errorf("%s: raw reader %v, raw writer %v, want %v", tt.name, r, w, tt.raw)
		}
	}
}

// wrapped stands for a type that wraps a kernel socket to see what
// passes: Copy must go through its Read and Write.
type wrapped struct{ *net.TCPConn }

func (w wrapped) Read(p []byte) (int, error) { return w.TCPConn.Read(p) }

// TestRawIOBytesIntact sends 4 MiB through a raw writer into a socket
// with small buffers (so that writes come back partial and EAGAIN, and
// the poller waits) and reads it back through a raw reader in small
// pieces.
func TestRawIOBytesIntact(t *testing.T) {
	for _, kind := range []string{"tcp", "unix"} {
		t.Run(kind, func(t *testing.T) {
			a, b := pairOf(t, kind)
			setBuf(t, a, b)
			want := make([]byte, 4<<20)
			rand.Read(want)
			errc := make(chan error, 1)
			go func() {
				n, err := writerOf(a).Write(want)
				if err == nil && n != len(want) {
					err = io.ErrShortWrite
				}
				if err == nil {
					err = a.CloseWrite()
				}
				errc <- err
			}()
			got, err := io.ReadAll(io.LimitReader(readerOf(b), 1<<30))
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if werr := <-errc; werr != nil {
				t.Fatalf("write: %v", werr)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, want the %d written, intact", len(got), len(want))
			}
		})
	}
}

// TestRawIOEndings checks what a raw reader and writer report when the
// connection ends in each way Pipe must tell apart.
func TestRawIOEndings(t *testing.T) {
	tests := []struct {
		name string
		act  func(t *testing.T, local, peer *net.TCPConn) error
		want func(error) bool
	}{
		{"peer half-closes: EOF", func(t *testing.T, local, peer *net.TCPConn) error {
			peer.CloseWrite()
			_, err := readerOf(local).Read(make([]byte, 10))
			return err
		}, func(err error) bool { return err == io.EOF }},
		{"peer resets: read fails", func(t *testing.T, local, peer *net.TCPConn) error {
			Reset(peer)
			_, err := readerOf(local).Read(make([]byte, 10))
			return err
		}, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
		{"peer resets: write fails, no SIGPIPE", func(t *testing.T, local, peer *net.TCPConn) error {
			Reset(peer)
			w := writerOf(local)
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				if _, err := w.Write([]byte("x")); err != nil {
					return err
				}
				time.Sleep(time.Millisecond)
			}
			return nil
		}, func(err error) bool { return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) }},
		{"read deadline passes", func(t *testing.T, local, peer *net.TCPConn) error {
			local.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err := readerOf(local).Read(make([]byte, 10))
			return err
		}, func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }},
		{"descriptor switched to blocking: the deadline still ends a read", func(t *testing.T, local, peer *net.TCPConn) error {
			// File().Fd() makes the shared file description blocking; a
			// raw read(2) would then block for good, holding its P.
			f, err := local.File()
			if err != nil {
				return err
			}
			f.Fd()
			f.Close()
			local.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err = readerOf(local).Read(make([]byte, 10))
			return err
		}, func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }},
		{"half-closed through the raw shutdown: the peer reads EOF, the other way goes on", func(t *testing.T, local, peer *net.TCPConn) error {
			if err := closeWrite(local); err != nil {
				return err
			}
			if b, err := io.ReadAll(peer); err != nil || len(b) != 0 {
				return fmt.Errorf("peer read %q, %v", b, err)
			}
			peer.Write([]byte("x"))
			b := make([]byte, 1)
			if _, err := readerOf(local).Read(b); err != nil || b[0] != 'x' {
				return fmt.Errorf("read back %q, %v", b, err)
			}
			return nil
		}, func(err error) bool { return err == nil }},
		{"closed under a waiting read", func(t *testing.T, local, peer *net.TCPConn) error {
			time.AfterFunc(20*time.Millisecond, func() { local.Close() })
			_, err := readerOf(local).Read(make([]byte, 10))
			return err
		}, func(err error) bool { return errors.Is(err, net.ErrClosed) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local, peer := tcpPair(t)
			if err := tt.act(t, local, peer); !tt.want(err) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func unixPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
	}
	t.Cleanup(func() { conns[0].Close(); conns[1].Close() })
	return conns[0], conns[1]
}

// pairOf returns a connected pair of kind "tcp" or "unix".
func pairOf(t *testing.T, kind string) (Conn, Conn) {
	if kind == "unix" {
		return unixPair(t)
	}
	return tcpPair(t)
}

// setBuf makes the pair's socket buffers small.
func setBuf(t *testing.T, a, b Conn) {
	type bufSetter interface {
		SetWriteBuffer(int) error
		SetReadBuffer(int) error
	}
	if err := a.(bufSetter).SetWriteBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	if err := b.(bufSetter).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
}
