package stack_test

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/stacktest"
)

var (
	buildOnce sync.Once
	cClient   string
	buildErr  error
	exampleFD = filepath.Join("..", "examples", "fdclient")
)

// client returns the command line of the C or Python example client.
func client(t *testing.T, lang string, args ...string) *exec.Cmd {
	t.Helper()
	switch lang {
	case "c":
		buildOnce.Do(func() {
			dir, err := os.MkdirTemp("", "fdclient")
			if err != nil {
				buildErr = err
				return
			}
			cClient = filepath.Join(dir, "fdclient")
			out, err := exec.Command("cc", "-O2", "-Wall", "-o", cClient, filepath.Join(exampleFD, "fdclient.c")).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("cc: %v\n%s", err, out)
			}
		})
		if buildErr != nil {
			t.Skipf("cannot build the C client: %v", buildErr)
		}
		return exec.Command(cClient, args...)
	default:
		py, err := exec.LookPath("python3")
		if err != nil {
			t.Skip("no python3")
		}
		return exec.Command(py, append([]string{filepath.Join(exampleFD, "fdclient.py")}, args...)...)
	}
}

// runWithFD runs cmd with f as its fd 3 and returns its stdout once it
// exits. Our copy of f is closed once the child has it.
func runWithFD(t *testing.T, cmd *exec.Cmd, f *os.File) <-chan string {
	t.Helper()
	cmd.ExtraFiles = []*os.File{f}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	done := make(chan string, 1)
	go func() {
		if err := cmd.Wait(); err != nil {
			t.Errorf("%s: %v\n%s", cmd.Args, err, errb.String())
		}
		done <- out.String()
	}()
	return done
}

// loopPair returns a connected pair on a loopback stack: the client
// (Go side) and the accepted server side.
func loopPair(t *testing.T) (s *stack.Stack, c, srv *stack.TCPConn) {
	t.Helper()
	s, err := stacktest.NewLoopback(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ln, err := s.ListenTCP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err = s.DialTCP(t.Context(), netip.AddrPort{}, ln.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	srv, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	return s, c, srv
}

func bulkSize() int64 {
	if testing.Short() || raceEnabled {
		return 16 << 20
	}
	return 256 << 20
}

// TestFDSink sends bulk data through an exported fd to each client, which
// reads to EOF (our FIN), replies with a checksum and half-closes (our EOF).
func TestFDSink(t *testing.T) {
	for _, lang := range []string{"c", "python"} {
		t.Run(lang, func(t *testing.T) {
			stacktest.CheckLeaks(t)
			_, c, srv := loopPair(t)
			defer c.Close()
			f, err := srv.File()
			if err != nil {
				t.Fatal(err)
			}
			done := runWithFD(t, client(t, lang, "sink", "3"), f)
			var h hash.Hash = fnv.New64a()
			if lang == "python" {
				h = sha256.New()
			}
			size := bulkSize()
			start := time.Now()
			src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{9}), size), h)
			if _, err := io.CopyBuffer(c, src, make([]byte, 1<<20)); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			reply, err := io.ReadAll(c) // ends with the client's FIN
			if err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			want := fmt.Sprintf("%d %x\n", size, h.Sum(nil))
			if string(reply) != want {
				t.Fatalf("reply %q, want %q", reply, want)
			}
			if out := <-done; out != want {
				t.Errorf("client printed %q", out)
			}
			t.Logf("%d MiB to %s in %v (%.0f MiB/s)", size>>20, lang, d, float64(size)/(1<<20)/d.Seconds())
		})
	}
}

// TestFDSource has each client write bulk data through the fd and
// half-close; we check the bytes, answer, and half-close in turn.
func TestFDSource(t *testing.T) {
	for _, lang := range []string{"c", "python"} {
		t.Run(lang, func(t *testing.T) {
			stacktest.CheckLeaks(t)
			_, c, srv := loopPair(t)
			defer c.Close()
			f, err := srv.File()
			if err != nil {
				t.Fatal(err)
			}
			size := bulkSize() / 4
			done := runWithFD(t, client(t, lang, "source", "3", fmt.Sprint(size)), f)
			var n int64
			buf := make([]byte, 1<<20)
			for {
				k, err := c.Read(buf)
				for _, b := range buf[:k] {
					if b != byte((n*131+7)&0xff) {
						t.Fatalf("byte %d = %d", n, b)
					}
					n++
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if n != size {
				t.Fatalf("got %d bytes, want %d", n, size)
			}
			fmt.Fprintf(c, "got %d\n", n)
			c.CloseWrite()
			if out := <-done; out != fmt.Sprintf("got %d\n", size) {
				t.Errorf("client printed %q", out)
			}
		})
	}
}

func TestFDListener(t *testing.T) {
	for _, lang := range []string{"c", "python"} {
		t.Run(lang, func(t *testing.T) {
			stacktest.CheckLeaks(t)
			s, err := stacktest.NewLoopback(stack.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ln, err := s.ListenTCP(netip.MustParseAddrPort("127.0.0.1:0"))
			if err != nil {
				t.Fatal(err)
			}
			f, err := ln.File()
			if err != nil {
				t.Fatal(err)
			}
			done := runWithFD(t, client(t, lang, "accept", "3", "2"), f)
			var want []string
			for range 2 {
				c, err := s.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				line, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				if exp := fmt.Sprintf("hello %s\n", c.LocalAddr()); err != nil || line != exp {
					t.Fatalf("read %q, %v; want %q", line, err, exp)
				}
				want = append(want, fmt.Sprintf("accepted %s\n", c.LocalAddr()))
			}
			if out := <-done; out != strings.Join(want, "") {
				t.Errorf("client printed %q", out)
			}
			// The client exited, closing the listener fd: the listener goes.
			waitFor(t, func() bool {
				_, err := s.Dial("tcp", ln.Addr().String())
				return errors.Is(err, syscall.ECONNREFUSED)
			})
		})
	}
}

func TestFDUDP(t *testing.T) {
	for _, lang := range []string{"c", "python"} {
		t.Run(lang, func(t *testing.T) {
			stacktest.CheckLeaks(t)
			s, err := stacktest.NewLoopback(stack.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			echo, err := s.ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
			if err != nil {
				t.Fatal(err)
			}
			defer echo.Close()
			go func() {
				buf := make([]byte, 1500)
				for {
					n, from, err := echo.ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					echo.WriteToUDPAddrPort(append([]byte("echo "), buf[:n]...), from)
				}
			}()
			c, err := s.DialUDP(netip.AddrPort{}, echo.LocalAddr().(*net.UDPAddr).AddrPort())
			if err != nil {
				t.Fatal(err)
			}
			f, err := c.File()
			if err != nil {
				t.Fatal(err)
			}
			out := <-runWithFD(t, client(t, lang, "udp", "3"), f)
			if want := "echo ping 1\necho ping 2\necho ping 3\n"; out != want {
				t.Errorf("client printed %q, want %q", out, want)
			}
		})
	}
}

// TestFDUnconnectedUDP checks the address header of unconnected exports.
func TestFDUnconnectedUDP(t *testing.T) {
	stacktest.CheckLeaks(t)
	s, err := stacktest.NewLoopback(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := s.ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	uaddr := u.LocalAddr().(*net.UDPAddr).AddrPort()
	f, err := u.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	peer, err := s.ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	paddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	peer.WriteToUDPAddrPort([]byte("to fd"), uaddr)
	buf := make([]byte, 100)
	n, err := f.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{4, byte(paddr.Port() >> 8), byte(paddr.Port()), 127, 0, 0, 1}, "to fd"...)
	if string(buf[:n]) != string(want) {
		t.Fatalf("message %v, want %v", buf[:n], want)
	}
	f.Write(append([]byte{4, byte(paddr.Port() >> 8), byte(paddr.Port()), 127, 0, 0, 1}, "from fd"...))
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "from fd" || from != uaddr {
		t.Fatalf("peer got %q from %v, %v", buf[:n], from, err)
	}
}

// TestFDReset: a reset closes the exported fd: POLLHUP, EOF, EPIPE.
func TestFDReset(t *testing.T) {
	stacktest.CheckLeaks(t)
	_, c, srv := loopPair(t)
	f, err := srv.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c.SetLinger(0)
	c.Close()
	fd := int(f.Fd())
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	if n, err := unix.Poll(pfd, 5000); n != 1 || err != nil || pfd[0].Revents&unix.POLLHUP == 0 {
		t.Fatalf("poll = %d, %v, revents %#x; want POLLHUP", n, err, pfd[0].Revents)
	}
	if n, err := syscall.Read(fd, make([]byte, 10)); n != 0 || err != nil {
		t.Fatalf("read = %d, %v; want EOF", n, err)
	}
	if _, err := syscall.Write(fd, []byte("x")); err != syscall.EPIPE {
		t.Fatalf("write = %v, want EPIPE", err)
	}
}

// TestFDHalfCloseAndHolderClose: the peer's FIN is POLLRDHUP without
// POLLHUP and the fd stays writable; closing the fd closes the connection
// even while the peer stays silent.
func TestFDHalfCloseAndHolderClose(t *testing.T) {
	stacktest.CheckLeaks(t)
	_, c, srv := loopPair(t)
	defer c.Close()
	f, err := srv.File()
	if err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	c.CloseWrite()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	if n, _ := unix.Poll(pfd, 5000); n != 1 || pfd[0].Revents&unix.POLLRDHUP == 0 || pfd[0].Revents&unix.POLLHUP != 0 {
		t.Fatalf("revents %#x, want POLLRDHUP only", pfd[0].Revents)
	}
	if _, err := syscall.Write(fd, []byte("still open")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "still open" {
		t.Fatalf("read %q, %v", buf, err)
	}
	// Shut down writing, then close: the connection finishes with a FIN.
	syscall.Shutdown(fd, syscall.SHUT_WR)
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("after SHUT_WR: %v, want EOF", err)
	}
	f.Close()
}

// TestFDHolderCloseSilentPeer: the holder half-closes and then closes the
// fd while the peer neither sends nor closes; the bridge must still go.
func TestFDHolderCloseSilentPeer(t *testing.T) {
	stacktest.CheckLeaks(t)
	_, c, srv := loopPair(t)
	defer c.Close()
	f, err := srv.File()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read = %v, want EOF", err)
	}
	// The bridge notices the hang-up and closes; CheckLeaks verifies its
	// goroutines are gone.
}

// TestFDBackPressure: a holder writing into the fd while nobody reads the
// peer blocks after a bounded amount.
func TestFDBackPressure(t *testing.T) {
	stacktest.CheckLeaks(t)
	_, c, srv := loopPair(t)
	defer c.Close()
	f, err := srv.File()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var written int64
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for range 1024 { // 64 MiB
			n, err := f.Write(buf)
			mu.Lock()
			written += int64(n)
			mu.Unlock()
			if err != nil {
				done <- err
				return
			}
		}
		done <- syscall.Shutdown(int(f.Fd()), syscall.SHUT_WR)
	}()
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	stalled := written
	mu.Unlock()
	t.Logf("holder wrote %d KiB before blocking", stalled>>10)
	if stalled >= 48<<20 {
		t.Fatalf("holder wrote %d bytes with nobody reading", stalled)
	}
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != 64<<20 {
		t.Fatalf("read %d, %v", n, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
	}
}
