package fdpass

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// pair returns both ends of a unix socketpair of type typ.
func pair(t *testing.T, typ int) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
		t.Cleanup(func() { conns[i].Close() })
	}
	return conns[0], conns[1]
}

// pipes returns n pipes' write ends (to send) and read ends (to check).
func pipes(t *testing.T, n int) (w, r []*os.File) {
	t.Helper()
	for range n {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pr.Close(); pw.Close() })
		r, w = append(r, pr), append(w, pw)
	}
	return w, r
}

func TestSendReceive(t *testing.T) {
	for _, tc := range []struct {
		name     string
		typ      int
		files    int
		nonblock bool
	}{
		{"seqpacket one", unix.SOCK_SEQPACKET, 1, false},
		{"seqpacket three", unix.SOCK_SEQPACKET, 3, true},
		{"stream one", unix.SOCK_STREAM, 1, false},
		{"dgram none", unix.SOCK_DGRAM, 0, false},
		{"seqpacket max", unix.SOCK_SEQPACKET, MaxFiles, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t, tc.typ)
			w, r := pipes(t, tc.files)
			if err := Send(a, []byte("hello"), w...); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			recv := Receive
			if tc.nonblock {
				recv = ReceiveNonblock
			}
			n, files, err := recv(b, buf, "test")
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:n]); got != "hello" {
				t.Errorf("message %q, want hello", got)
			}
			if len(files) != tc.files {
				t.Fatalf("got %d files, want %d", len(files), tc.files)
			}
			for i, f := range files {
				flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
				if err != nil || flags&unix.FD_CLOEXEC == 0 {
					t.Errorf("file %d: close-on-exec not set (flags %#x, %v)", i, flags, err)
				}
				// The received descriptor is the pipe's write end: bytes
				// written through it come out of the original read end.
				msg := []byte{byte('a' + i%26)}
				if _, err := f.Write(msg); err != nil {
					t.Fatalf("file %d: write: %v", i, err)
				}
				got := make([]byte, 1)
				if _, err := io.ReadFull(r[i], got); err != nil || got[0] != msg[0] {
					t.Errorf("file %d: read %q (%v), want %q", i, got, err, msg)
				}
				f.Close()
			}
		})
	}
}

func TestSendRefuses(t *testing.T) {
	a, _ := pair(t, unix.SOCK_SEQPACKET)
	w, _ := pipes(t, MaxFiles+1)
	for _, tc := range []struct {
		name  string
		msg   []byte
		files []*os.File
		want  string
	}{
		{"empty message", nil, w[:1], "non-empty message"},
		{"too many descriptors", []byte("x"), w, "at most 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Send(a, tc.msg, tc.files...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Send: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// ReceiveFile keeps the first descriptor and closes the others, so none
// leaks.
func TestReceiveFileClosesExtras(t *testing.T) {
	a, b := pair(t, unix.SOCK_SEQPACKET)
	w, r := pipes(t, 3)
	if err := Send(a, []byte("p"), w...); err != nil {
		t.Fatal(err)
	}
	for _, f := range w[1:] {
		f.Close() // ours; the extras' only other copies are in flight
	}
	_, f, err := ReceiveFile(b, make([]byte, 8), "test")
	if err != nil || f == nil {
		t.Fatalf("ReceiveFile: %v, %v", f, err)
	}
	defer f.Close()
	// With every write end of pipes 1 and 2 closed, their readers see EOF.
	for i := 1; i < 3; i++ {
		if n, err := r[i].Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("pipe %d: read %d, %v; want EOF (an extra descriptor leaked)", i, n, err)
		}
	}
}

func TestRightsMalformed(t *testing.T) {
	for _, oob := range [][]byte{nil, {1, 2, 3}, make([]byte, unix.CmsgSpace(4))} {
		if fds := Rights(oob); len(fds) != 0 {
			t.Errorf("Rights(%v) = %v, want none", oob, fds)
		}
	}
}

func TestReceiveEOF(t *testing.T) {
	a, b := pair(t, unix.SOCK_STREAM)
	a.Close()
	n, f, err := ReceiveFile(b, make([]byte, 8), "test")
	if n != 0 || f != nil || !errors.Is(err, io.EOF) {
		t.Errorf("ReceiveFile after peer close: %d, %v, %v; want 0, nil, EOF", n, f, err)
	}
}
