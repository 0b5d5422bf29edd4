// Package fdserve serves sockets exported by a stack (stack.Socket.File),
// inetd style: it runs a command for each connection an exported TCP
// listener accepts, or for each peer of an exported unconnected UDP socket,
// with the connection as the command's standard input and output. It is
// the library behind `tunstack listen`.
package fdserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/tunstack/tunstack/stack"
)

// PeerEnv names the environment variable that holds the peer's address
// ("10.0.2.100:40000") for each command.
const PeerEnv = "TUNSTACK_PEER"

// ErrNotFound is wrapped by the error of a command that could not be
// started because its program does not exist; its status is 127, as a
// shell's.
var ErrNotFound = errors.New("not found")

// StatusNotFound is the status of a command whose program does not exist.
const StatusNotFound = 127

// Server runs Argv per connection or UDP peer. The zero value is not
// usable: Argv must name a command.
type Server struct {
	// Argv is the command and its arguments.
	Argv []string
	// Once serves one connection (or UDP flow) and returns its command's
	// status instead of serving until the socket closes.
	Once bool
	// Stderr is the commands' standard error (default: os.Stderr).
	Stderr io.Writer
	// Logger reports commands that failed to start while serving goes on
	// (default: slog.Default()).
	Logger *slog.Logger
}

func (s *Server) stderr() io.Writer {
	if s.Stderr == nil {
		return os.Stderr
	}
	return s.Stderr
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Start starts argv with f as its standard input and output and stderr as
// its standard error; env is added to the process's environment. A
// missing program is an error wrapping ErrNotFound.
func Start(argv []string, f *os.File, stderr io.Writer, env ...string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("fdserve: no command to run")
	}
	c := exec.Command(argv[0], argv[1:]...)
	c.Stdin, c.Stdout, c.Stderr = f, f, stderr
	if len(env) > 0 {
		c.Env = append(os.Environ(), env...)
	}
	if err := c.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", argv[0], ErrNotFound)
		}
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	return c, nil
}

// Run runs argv as Start does and returns its exit status (Wait); a
// missing program returns StatusNotFound with an error wrapping
// ErrNotFound.
func Run(argv []string, f *os.File, stderr io.Writer, env ...string) (int, error) {
	c, err := Start(argv, f, stderr, env...)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return StatusNotFound, err
		}
		return 0, err
	}
	return Wait(c), nil
}

// Wait waits for c and returns its exit status: 128+N when a signal N
// killed it, 125 when waiting failed.
func Wait(c *exec.Cmd) int {
	err := c.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return 128 + int(st.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return 125
	}
	return 0
}

// ServeTCP runs the command for each connection the exported listener ln
// accepts (see stack.AcceptExported), concurrently, until ln closes or ctx
// ends. A program that does not exist ends serving with StatusNotFound
// and an error wrapping ErrNotFound. With Once it returns the first
// connection's command's status.
func (s *Server) ServeTCP(ctx context.Context, ln *net.UnixConn) (int, error) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		peer, conn, err := stack.AcceptExported(ln)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, err
		}
		env := PeerEnv + "=" + peer.String()
		if s.Once {
			code, err := Run(s.Argv, conn, s.stderr(), env)
			conn.Close()
			return code, err
		}
		c, err := Start(s.Argv, conn, s.stderr(), env)
		conn.Close() // the command holds its own copy
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return StatusNotFound, err
			}
			s.logger().Warn("fdserve: connection dropped", "peer", peer, "err", err)
			continue
		}
		go c.Wait()
	}
}

// udpFlows is the set of UDP peers with a running command.
type udpFlows struct {
	mu sync.Mutex // guards m
	// +checklocks:mu
	m map[netip.AddrPort]*net.UnixConn // our end of each command's socket
}

func (f *udpFlows) get(peer netip.AddrPort) *net.UnixConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[peer]
}

// closeAll ends every flow's socket, so their commands read EOF.
func (f *udpFlows) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, uc := range f.m {
		uc.Close()
	}
}

func (f *udpFlows) set(peer netip.AddrPort, uc *net.UnixConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if uc == nil {
		delete(f.m, peer)
		return
	}
	f.m[peer] = uc
}

// ServeUDP demultiplexes the datagrams of an exported unconnected UDP
// socket by peer address and runs the command once per peer: its standard
// input and output are a SOCK_SEQPACKET socket carrying that peer's
// payloads (one read, one datagram; one write, one reply). A peer's flow
// ends when its command exits; its next datagram starts a new one. It
// returns when sock closes or ctx ends, closing the running flows'
// sockets; with Once, after the first flow, with its command's status.
func (s *Server) ServeUDP(ctx context.Context, sock *net.UnixConn) (int, error) {
	stop := context.AfterFunc(ctx, func() { sock.Close() })
	defer stop()
	flows := &udpFlows{m: map[netip.AddrPort]*net.UnixConn{}}
	defer flows.closeAll()
	buf := make([]byte, stack.MaxAddrHeaderLen+65536)
	started := false
	onceCode := make(chan int, 1)
	for {
		n, err := sock.Read(buf)
		if err != nil || n == 0 {
			if s.Once && started {
				return <-onceCode, nil // the flow ended and closed the socket
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if err == nil {
				err = errors.New("the instance closed the socket")
			}
			return 0, fmt.Errorf("fdserve: udp: %w", err)
		}
		peer, payload, err := stack.ParseAddrHeader(buf[:n])
		if err != nil {
			s.logger().Debug("fdserve: datagram dropped", "err", err)
			continue
		}
		uc := flows.get(peer)
		if uc == nil {
			if s.Once && started {
				continue
			}
			uc, err = s.startUDPFlow(sock, peer, func(code int) {
				flows.set(peer, nil)
				if s.Once {
					onceCode <- code
					sock.Close()
				}
			})
			if err != nil {
				if errors.Is(err, ErrNotFound) {
					return StatusNotFound, err
				}
				s.logger().Warn("fdserve: datagram dropped", "peer", peer, "err", err)
				continue
			}
			started = true
			flows.set(peer, uc)
		}
		uc.Write(payload) // a flow whose command is gone drops it
	}
}

// startUDPFlow starts the command for peer on a new seqpacket pair and
// relays its replies to sock; ended gets the command's status.
func (s *Server) startUDPFlow(sock *net.UnixConn, peer netip.AddrPort, ended func(code int)) (*net.UnixConn, error) {
	uc, theirs, err := seqpacketPair()
	if err != nil {
		return nil, err
	}
	c, err := Start(s.Argv, theirs, s.stderr(), PeerEnv+"="+peer.String())
	theirs.Close()
	if err != nil {
		uc.Close()
		return nil, err
	}
	relayed := make(chan struct{})
	go func() {
		defer close(relayed)
		hdr := stack.AppendAddrHeader(nil, peer)
		buf := make([]byte, len(hdr)+65536)
		copy(buf, hdr)
		for {
			n, err := uc.Read(buf[len(hdr):])
			if err != nil || n == 0 {
				return
			}
			sock.Write(buf[:len(hdr)+n])
		}
	}()
	go func() {
		code := Wait(c)
		// Everything the command wrote is queued on uc by now: relay
		// it before the flow ends (closing uc at once dropped a reply
		// still queued). The read ends at EOF, or after drainGrace when
		// something the command left running still holds its end.
		uc.SetReadDeadline(time.Now().Add(drainGrace))
		<-relayed
		uc.Close()
		ended(code)
	}()
	return uc, nil
}

// drainGrace bounds how long a UDP flow's replies are still relayed after
// its command has exited, when a process it left behind keeps the socket
// open (EOF never comes).
const drainGrace = time.Second

// seqpacketPair returns our end of a SOCK_SEQPACKET pair on Go's poller
// and the other end as a file for a command.
func seqpacketPair() (*net.UnixConn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "tunstack-udp-flow")
	theirs := os.NewFile(uintptr(fds[1]), "tunstack-udp-flow")
	fc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return nil, nil, err
	}
	return fc.(*net.UnixConn), theirs, nil
}
