package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// relayed sets up client → (a Pipe) → server over loopback and returns the
// client's end, the server's end, and a channel closed when Pipe returns.
func relayed(t *testing.T) (client, server *net.TCPConn, done chan struct{}) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	done = make(chan struct{})
	go func() {
		defer close(done)
		Pipe(a, b)
	}()
	for _, c := range []*net.TCPConn{client, server} {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	return client, server, done
}

func TestPipe(t *testing.T) {
	tests := []struct {
		name string
		// act drives both ends and returns what the side under test saw.
		act  func(client, server *net.TCPConn) error
		want error
	}{
		{"data and EOF pass, the other way goes on", func(client, server *net.TCPConn) error {
			client.Write([]byte("hello"))
			client.CloseWrite()
			got, err := io.ReadAll(server)
			if err != nil || string(got) != "hello" {
				return fmt.Errorf("server read %q, %v", got, err)
			}
			server.Write([]byte("after half-close"))
			server.CloseWrite()
			got, err = io.ReadAll(client)
			if err != nil || string(got) != "after half-close" {
				return fmt.Errorf("client read %q, %v", got, err)
			}
			return nil
		}, nil},
		{"server reset reaches the client", func(client, server *net.TCPConn) error {
			client.Write([]byte("x"))
			io.ReadFull(server, make([]byte, 1))
			server.SetLinger(0)
			server.Close()
			_, err := client.Read(make([]byte, 1))
			return err
		}, syscall.ECONNRESET},
		{"client reset reaches the server", func(client, server *net.TCPConn) error {
			client.Write([]byte("x"))
			io.ReadFull(server, make([]byte, 1))
			client.SetLinger(0)
			client.Close()
			_, err := server.Read(make([]byte, 1))
			return err
		}, syscall.ECONNRESET},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server, done := relayed(t)
			err := tt.act(client, server)
			if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			client.Close()
			server.Close()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Pipe did not return after both ends closed")
			}
		})
	}
}

func TestCopyIntact(t *testing.T) {
	for _, size := range []int{0, 1, smallBuf, smallBuf + 1, 3*bigBuf + 7} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := make([]byte, size)
			rand.Read(data)
			var out bytes.Buffer
			// A reader that fills every read makes Copy grow to the big
			// buffer and back.
			if err := Copy(&out, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("copied %d bytes, want %d intact", out.Len(), size)
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, syscall.EPIPE }

func TestCopyNamesTheBrokenSide(t *testing.T) {
	err := Copy(failWriter{}, bytes.NewReader([]byte("x")))
	if !errors.Is(err, ErrWrite) || !errors.Is(err, syscall.EPIPE) {
		t.Errorf("write failure: %v, want ErrWrite and EPIPE", err)
	}
	err = Copy(io.Discard, iotestErrReader{syscall.ECONNRESET})
	if errors.Is(err, ErrWrite) || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read failure: %v, want ECONNRESET without ErrWrite", err)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestGroupCloseResetsAndWaits(t *testing.T) {
	var g Group
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	if !g.Go(func() { g.Pipe(a, b) }) {
		t.Fatal("Go refused on an open group")
	}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	server.SetDeadline(time.Now().Add(10 * time.Second))
	client.Write([]byte("x"))
	io.ReadFull(server, make([]byte, 1))
	for g.Len() == 0 {
		time.Sleep(time.Millisecond)
	}
	g.Close() // returns only once Pipe has
	for name, c := range map[string]*net.TCPConn{"client": client, "server": server} {
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s after Close: %v, want ECONNRESET", name, err)
		}
	}
	if g.Len() != 0 {
		t.Errorf("%d connections still tracked after Close", g.Len())
	}
	if g.Go(func() {}) || g.Track(client) {
		t.Error("a closed group admitted a goroutine or connection")
	}
}

// TestGroupRun: Close waits for a Run in progress, as for a goroutine of
// Go, and a closed group refuses Run.
func TestGroupRun(t *testing.T) {
	var g Group
	running, release := make(chan struct{}), make(chan struct{})
	ran := make(chan bool)
	go func() {
		ran <- g.Run(func() {
			close(running)
			<-release
		})
	}()
	<-running
	closed := make(chan struct{})
	go func() {
		g.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a Run was in progress")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed
	if !<-ran {
		t.Error("Run on an open group reported false")
	}
	if g.Run(func() { t.Error("a closed group ran f") }) {
		t.Error("Run on a closed group reported true")
	}
}

// flakyListener fails Accept with errs in turn, then accepts one
// connection, then reports closed.
type flakyListener struct {
	net.Listener
	errs []error
	conn net.Conn
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	if c := l.conn; c != nil {
		l.conn = nil
		return c, nil
	}
	return nil, net.ErrClosed
}

func TestAcceptBackoff(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	enfile := &net.OpError{Op: "accept", Net: "tcp", Err: syscall.ENFILE}
	tests := []struct {
		name       string
		errs       []error
		wantAccept bool
	}{
		{"recovers after EMFILE", []error{emfile, emfile, emfile}, true},
		{"recovers after ENFILE", []error{enfile}, true},
		{"closed listener ends the loop", []error{net.ErrClosed}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c1, _ := tcpPair(t)
			l := &flakyListener{errs: tt.errs, conn: c1}
			var b AcceptBackoff
			accepted, waits := false, 0
			start := time.Now()
			for {
				c, err := l.Accept()
				if err != nil {
					if !b.Wait(context.Background(), err) {
						break
					}
					waits++
					continue
				}
				accepted = c == c1
				b.Reset()
			}
			if accepted != tt.wantAccept {
				t.Fatalf("accepted %v, want %v", accepted, tt.wantAccept)
			}
			if tt.wantAccept && waits != len(tt.errs) {
				t.Errorf("waited %d times for %d errors", waits, len(tt.errs))
			}
			// 5+10+20 ms for three errors: backing off, not spinning.
			if min := time.Duration(0); tt.wantAccept && len(tt.errs) == 3 {
				min = 35 * time.Millisecond
				if el := time.Since(start); el < min {
					t.Errorf("three failures took %v, want at least %v of back-off", el, min)
				}
			}
		})
	}
}

func TestAcceptBackoffStopsWithContext(t *testing.T) {
	var b AcceptBackoff
	b.delay = maxAcceptDelay
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if b.Wait(ctx, syscall.EMFILE) {
		t.Error("Wait reported retry after its context ended")
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("Wait took %v after its context ended", el)
	}
	if b.Delay() != maxAcceptDelay {
		t.Errorf("delay grew past the cap: %v", b.Delay())
	}
}

func TestLimit(t *testing.T) {
	tests := []struct {
		name        string
		l           *Limit
		acquires    int
		wantOK      int
		wantDropped uint64
	}{
		{"within the cap", NewLimit("x", 3), 3, 3, 0},
		{"past the cap", NewLimit("x", 3), 5, 3, 2},
		{"zero is no cap", NewLimit("x", 0), 100, 100, 0},
		{"nil admits all", nil, 10, 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok := 0
			for range tt.acquires {
				if tt.l.Acquire() {
					ok++
				}
			}
			if ok != tt.wantOK || tt.l.Stat().Dropped != tt.wantDropped {
				t.Fatalf("admitted %d, dropped %d; want %d, %d", ok, tt.l.Stat().Dropped, tt.wantOK, tt.wantDropped)
			}
			if tt.l != nil && tt.l.Stat().InUse != int64(ok) {
				t.Errorf("in use %d after %d admitted", tt.l.Stat().InUse, ok)
			}
			for range ok {
				tt.l.Release()
			}
			if tt.l.Acquire() != true {
				t.Error("after every release the limit still refuses")
			}
		})
	}
}
