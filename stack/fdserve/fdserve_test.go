package fdserve

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/fdpass"
	"github.com/tunstack/tunstack/stack"
)

// pair returns both ends of a unix socketpair of type typ as connections.
func pair(t *testing.T, typ int) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	a, b := filePair(t, typ)
	return fileConn(t, a), fileConn(t, b)
}

func filePair(t *testing.T, typ int) (*os.File, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
}

func fileConn(t *testing.T, f *os.File) *net.UnixConn {
	t.Helper()
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.UnixConn)
}

// offer passes a new connection from peer over the listener's instance
// end, as the stack's exported listener does, and returns our end of it.
func offer(t *testing.T, instance *net.UnixConn, peer string) *net.UnixConn {
	t.Helper()
	ours, theirs := filePair(t, unix.SOCK_STREAM)
	if err := fdpass.Send(instance, []byte(peer), theirs); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	return fileConn(t, ours)
}

func TestServeTCPOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		argv     []string
		peer     string
		send     string
		wantOut  string
		wantCode int
		wantErr  string
	}{
		{"echo peer and input", []string{"sh", "-c", `read x; echo "pong $x $TUNSTACK_PEER"`}, "198.18.0.1:40000", "ping\n", "pong ping 198.18.0.1:40000\n", 0, ""},
		{"ipv6 peer", []string{"sh", "-c", `echo "$TUNSTACK_PEER"`}, "[2001:db8::1]:53", "", "[2001:db8::1]:53\n", 0, ""},
		{"exit status", []string{"sh", "-c", "exit 3"}, "198.18.0.1:1", "", "", 3, ""},
		{"killed by signal", []string{"sh", "-c", "kill -TERM $$"}, "198.18.0.1:1", "", "", 128 + 15, ""},
		{"missing program", []string{"/nonexistent/tunstack-test"}, "198.18.0.1:1", "", "", StatusNotFound, "not found"},
		{"bad peer address", []string{"true"}, "not-an-address", "", "", 0, `peer address "not-an-address"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			instance, holder := pair(t, unix.SOCK_SEQPACKET)
			conn := offer(t, instance, tc.peer)
			conn.Write([]byte(tc.send))
			conn.CloseWrite()
			s := &Server{Argv: tc.argv, Once: true}
			code, err := s.ServeTCP(t.Context(), holder)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ServeTCP: %d, %v; want an error containing %q", code, err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Errorf("status %d, want %d", code, tc.wantCode)
			}
			if tc.wantOut != "" {
				out, _ := io.ReadAll(conn)
				if string(out) != tc.wantOut {
					t.Errorf("connection got %q, want %q", out, tc.wantOut)
				}
			}
		})
	}
}

// Without Once, connections are served concurrently until the listener
// closes, and a missing program stops serving.
func TestServeTCPMany(t *testing.T) {
	instance, holder := pair(t, unix.SOCK_SEQPACKET)
	// Each command waits for its input; both are answered only after both
	// connections are up, so they run at the same time.
	var conns []*net.UnixConn
	for _, peer := range []string{"198.18.0.1:1000", "198.18.0.2:2000"} {
		conns = append(conns, offer(t, instance, peer))
	}
	done := make(chan error, 1)
	s := &Server{Argv: []string{"sh", "-c", `read x; echo "$x $TUNSTACK_PEER"`}}
	go func() { _, err := s.ServeTCP(t.Context(), holder); done <- err }()
	for i, c := range conns {
		c.Write([]byte("hi\n"))
		out, _ := io.ReadAll(c)
		want := []string{"hi 198.18.0.1:1000\n", "hi 198.18.0.2:2000\n"}[i]
		if string(out) != want {
			t.Errorf("connection %d got %q, want %q", i, out, want)
		}
	}
	instance.Close()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("ServeTCP after the listener closed: %v, want an error saying so", err)
	}

	instance, holder = pair(t, unix.SOCK_SEQPACKET)
	offer(t, instance, "198.18.0.1:1")
	s = &Server{Argv: []string{"/nonexistent/tunstack-test"}}
	if code, err := s.ServeTCP(t.Context(), holder); code != StatusNotFound || !errors.Is(err, ErrNotFound) {
		t.Errorf("missing program: %d, %v; want %d, ErrNotFound", code, err, StatusNotFound)
	}
}

// datagram is one message on an unconnected exported UDP socket.
func datagram(peer string, payload string) []byte {
	return append(stack.AppendAddrHeader(nil, netip.MustParseAddrPort(peer)), payload...)
}

func TestServeUDP(t *testing.T) {
	instance, holder := pair(t, unix.SOCK_SEQPACKET)
	done := make(chan error, 1)
	// Each read of the flow's socket is one datagram; cat answers each.
	s := &Server{Argv: []string{"sh", "-c", `echo "$TUNSTACK_PEER"; exec cat`}}
	go func() { _, err := s.ServeUDP(t.Context(), holder); done <- err }()
	msgs := []struct{ peer, payload string }{
		{"198.18.0.1:1000", "a"},
		{"[2001:db8::2]:2000", "b"},
		{"198.18.0.1:1000", "c"},
	}
	for _, m := range msgs {
		instance.Write(datagram(m.peer, m.payload))
	}
	instance.Write([]byte{5, 0, 1}) // a bad header is dropped, not fatal
	want := map[string]int{}
	for _, m := range msgs {
		want[string(datagram(m.peer, m.payload))]++
		want[string(datagram(m.peer, m.peer+"\n"))] = 1
	}
	n := 0
	for _, c := range want {
		n += c
	}
	buf := make([]byte, 256)
	for range n {
		n, err := instance.Read(buf)
		if err != nil {
			t.Fatalf("%v; replies still missing: %v", err, want)
		}
		if want[string(buf[:n])] == 0 {
			t.Errorf("unexpected reply %q", buf[:n])
		}
		want[string(buf[:n])]--
	}
	instance.Close()
	if err := <-done; err == nil {
		t.Error("ServeUDP returned no error after the socket closed")
	}
}

func TestServeUDPOnce(t *testing.T) {
	for _, tc := range []struct {
		name      string
		argv      []string
		wantReply []byte
		wantCode  int
		wantErr   error
	}{
		{"reply and status", []string{"sh", "-c", "head -c 6; exit 4"}, datagram("198.18.0.9:53", "query\n"), 4, nil},
		{"missing program", []string{"/nonexistent/tunstack-test"}, nil, StatusNotFound, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			instance, holder := pair(t, unix.SOCK_SEQPACKET)
			instance.Write(datagram("198.18.0.9:53", "query\n"))
			s := &Server{Argv: tc.argv, Once: true}
			code, err := s.ServeUDP(t.Context(), holder)
			if !errors.Is(err, tc.wantErr) || code != tc.wantCode {
				t.Fatalf("ServeUDP: %d, %v; want %d, %v", code, err, tc.wantCode, tc.wantErr)
			}
			if tc.wantReply != nil {
				buf := make([]byte, 256)
				n, err := instance.Read(buf)
				if err != nil || !bytes.Equal(buf[:n], tc.wantReply) {
					t.Errorf("reply % x (%v), want % x", buf[:n], err, tc.wantReply)
				}
			}
		})
	}
}

func TestServeStopsWithContext(t *testing.T) {
	for _, udp := range []bool{false, true} {
		_, holder := pair(t, unix.SOCK_SEQPACKET)
		ctx, cancel := context.WithCancel(t.Context())
		s := &Server{Argv: []string{"true"}}
		serve := s.ServeTCP
		if udp {
			serve = s.ServeUDP
		}
		time.AfterFunc(50*time.Millisecond, cancel)
		if _, err := serve(ctx, holder); !errors.Is(err, context.Canceled) {
			t.Errorf("udp=%v: serve after cancel: %v, want context.Canceled", udp, err)
		}
	}
}
