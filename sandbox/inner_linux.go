package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/fdpass"
)

// Port forwards from the host's loopback can be spliced kernel to kernel
// (see DialInner): tunstack needs TCP sockets of the sandbox's network
// namespace, and cannot make them itself (it is not privileged over that
// namespace, and its seccomp filter has no setns). The sandbox's init can:
// it is root in the user namespace above the command's. It keeps one locked
// thread in the command's network namespace and answers requests on a
// SOCK_SEQPACKET socket of its own to tunstack (fd 5), one datagram each:
//
//	tunstack → init  JSON innerRequest
//	init → tunstack  JSON innerReply, with N fresh unconnected sockets
//	                 (SOCK_STREAM, IPPROTO_TCP) attached on success
//
// A request for family unix.AF_NETLINK (N 1) asks for a NETLINK_SOCK_DIAG
// socket instead, with which tunstack ss lists the namespace's sockets as
// ss inside it does (see WithSockDiag).
//
// Nothing in the sandbox can reach that socket.

// innerRequest asks init for N sockets of a family (unix.AF_INET or
// unix.AF_INET6), or for one NETLINK_SOCK_DIAG socket (unix.AF_NETLINK).
type innerRequest struct {
	Family int `json:"family"`
	N      int `json:"n"`
}

// innerReply says how many sockets came with it, or why none did.
type innerReply struct {
	N     int    `json:"n"`
	Error string `json:"error,omitempty"`
}

// maxInnerBatch bounds the sockets of one request (they travel in one
// message).
const maxInnerBatch = 16

// ErrNoInner is returned by DialInner for a sandbox whose init cannot
// make sockets in the command's network namespace (an attached
// namespace, or an init that could not enter it).
var ErrNoInner = errors.New("sandbox: no init to make sockets in the sandbox's network namespace")

// innerPair is the socket on which init makes sockets for tunstack: our
// end and the init child's.
func innerPair() (*net.UnixConn, *os.File, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "sandbox-inner")
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		unix.Close(pair[1])
		return nil, nil, fmt.Errorf("sandbox: inner socket channel: %w", err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(pair[1]), "sandbox-inner-init"), nil
}

// openNetNS opens the network namespace of the process pid (as init sees
// it); the exec child's is the command's from its first instruction.
func openNetNS(pid int) (int, error) {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open the command's network namespace: %w", err)
	}
	return fd, nil
}

// serveInner is init's side: it enters the namespace nsfd (or, when
// nsErr is set, answers every request with it) on a thread it keeps, and
// makes sockets there until tunstack closes f. The thread stays locked
// and so dies with this goroutine: no other goroutine ever runs in the
// command's namespace.
func serveInner(f *os.File, nsfd int, nsErr error) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		if nsfd >= 0 {
			unix.Close(nsfd)
		}
		return
	}
	defer c.Close()
	conn := c.(*net.UnixConn)
	runtime.LockOSThread()
	if nsErr == nil {
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			nsErr = fmt.Errorf("enter the command's network namespace: %w", err)
		}
		unix.Close(nsfd)
	}
	buf := make([]byte, 512)
	for {
		n, err := conn.Read(buf)
		if err != nil || n == 0 {
			return
		}
		if err := answerInner(conn, buf[:n], nsErr); err != nil {
			return
		}
	}
}

// answerInner makes and sends the sockets one request asks for.
func answerInner(conn *net.UnixConn, msg []byte, nsErr error) error {
	var req innerRequest
	err := nsErr
	if err == nil {
		if jerr := json.Unmarshal(msg, &req); jerr != nil {
			err = fmt.Errorf("bad request %q", msg)
		} else if !validInnerRequest(req) {
			err = fmt.Errorf("bad request: family %d, %d sockets", req.Family, req.N)
		}
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for i := 0; err == nil && i < req.N; i++ {
		fd, serr := innerSocket(req.Family)
		if serr != nil {
			if len(files) == 0 {
				err = fmt.Errorf("socket: %w", serr)
			}
			break
		}
		files = append(files, os.NewFile(uintptr(fd), "inner-socket"))
	}
	r := innerReply{N: len(files)}
	if err != nil {
		r.Error = err.Error()
	}
	b, _ := json.Marshal(r)
	if len(files) == 0 {
		_, werr := conn.Write(b)
		return werr
	}
	return fdpass.Send(conn, b, files...)
}

// validInnerRequest: 1 to maxInnerBatch TCP sockets, or one sock_diag
// socket.
func validInnerRequest(req innerRequest) bool {
	switch req.Family {
	case unix.AF_INET, unix.AF_INET6:
		return req.N >= 1 && req.N <= maxInnerBatch
	case unix.AF_NETLINK:
		return req.N == 1
	}
	return false
}

// innerSocket makes one socket of a request's family (on init's thread
// in the command's namespace).
func innerSocket(family int) (int, error) {
	if family == unix.AF_NETLINK {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	}
	return unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
}

// fetchInner asks init for n sockets of family over conn and returns
// their descriptors, each checked to be what was asked for (a TCP socket
// of that family); the caller owns them.
func fetchInner(conn *net.UnixConn, family, n int) ([]int, error) {
	b, _ := json.Marshal(innerRequest{Family: family, N: n})
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(b); err != nil {
		return nil, fmt.Errorf("sandbox: ask init for sockets: %w", err)
	}
	buf := make([]byte, 512)
	got, fds, err := fdpass.ReadMsg(conn, buf)
	if err == nil && got == 0 {
		err = errors.New("init closed the socket channel")
	}
	var r innerReply
	if err == nil {
		if jerr := json.Unmarshal(buf[:got], &r); jerr != nil {
			err = fmt.Errorf("bad reply %q", buf[:got])
		} else if r.Error != "" {
			err = fmt.Errorf("init: %s", r.Error)
		} else if r.N != len(fds) || len(fds) == 0 {
			err = fmt.Errorf("init announced %d sockets and sent %d", r.N, len(fds))
		}
	}
	for i := 0; err == nil && i < len(fds); i++ {
		err = checkInner(fds[i], family)
	}
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("sandbox: sockets from init: %w", err)
	}
	return fds, nil
}

// checkInner verifies that a descriptor from init is an unconnected TCP
// socket of family, or for unix.AF_NETLINK a NETLINK_SOCK_DIAG socket:
// whatever init sends, tunstack only ever connects a TCP socket with it,
// or dumps sockets with the netlink one.
func checkInner(fd, family int) error {
	typ, proto := unix.SOCK_STREAM, unix.IPPROTO_TCP
	if family == unix.AF_NETLINK {
		typ, proto = unix.SOCK_RAW, unix.NETLINK_SOCK_DIAG
	}
	want := [...]struct {
		opt, val int
		name     string
	}{
		{unix.SO_DOMAIN, family, "SO_DOMAIN"},
		{unix.SO_TYPE, typ, "SO_TYPE"},
		{unix.SO_PROTOCOL, proto, "SO_PROTOCOL"},
	}
	for _, w := range want {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, w.opt)
		if err != nil {
			return fmt.Errorf("descriptor %d: %s: %w", fd, w.name, err)
		}
		if v != w.val {
			return fmt.Errorf("descriptor %d: %s is %d, want %d", fd, w.name, v, w.val)
		}
	}
	if family == unix.AF_NETLINK {
		return nil
	}
	if _, err := unix.Getpeername(fd); err == nil {
		return fmt.Errorf("descriptor %d: already connected", fd)
	}
	return nil
}

// HasInner reports whether DialInner can work: the sandbox has an init
// (it is not an attached namespace).
func (sb *Sandbox) HasInner() bool { return sb.inner != nil }

// WithSockDiag runs fn with a NETLINK_SOCK_DIAG socket of the sandbox's
// network namespace, made by its init and kept for later calls (fn must
// not close it; calls are serialised). ErrNoInner means this sandbox has
// no init to make one (an attached namespace).
func (sb *Sandbox) WithSockDiag(fn func(fd int) error) error {
	if sb.inner == nil {
		return ErrNoInner
	}
	return sb.inner.withDiag(fn)
}

// DialInner connects to dst from inside the sandbox's network namespace
// with a socket its init made there, so that a port forward can relay
// kernel socket to kernel socket. The socket is bound to the loopback
// address of dst's family (127.0.0.1 or ::1) first: the sandbox's server
// sees the connection come from its own loopback, as it does behind
// rootlesskit's builtin port driver and pasta's spliced forwards. dst is
// normally the sandbox's own address, which the kernel reaches over the
// namespace's lo. A refusal is an error wrapping unix.ECONNREFUSED;
// ErrNoInner means this sandbox cannot make such sockets.
func (sb *Sandbox) DialInner(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error) {
	if sb.inner == nil {
		return nil, ErrNoInner
	}
	family, lo := unix.AF_INET, netip.IPv6Loopback()
	if dst.Addr().Unmap().Is4() {
		lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	} else {
		family = unix.AF_INET6
	}
	fd, err := sb.inner.get(family)
	if err != nil {
		return nil, err
	}
	return connectInner(ctx, fd, lo, dst)
}

// connectTimeout bounds the blocking connect connectInner tries first.
// Over the namespace's lo the handshake completes within the call, so
// the thread is not held; a connect that takes longer (a full listen
// backlog drops the SYN) goes on under the runtime poller.
const connectTimeout = 100 * time.Millisecond

// connectInner binds fd to lo and connects it to dst; it owns fd. The
// connect blocks (for at most connectTimeout): on loopback that completes
// at once and spares a registration with the poller and a wake-up; only
// a slow one is waited for without a thread.
func connectInner(ctx context.Context, fd int, lo netip.Addr, dst netip.AddrPort) (*net.TCPConn, error) {
	tv := unix.NsecToTimeval(connectTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sandbox: inner socket: SO_SNDTIMEO: %w", err)
	}
	if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(lo, 0))); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sandbox: inner socket: bind %s: %w", lo, err)
	}
	cerr := unix.Connect(fd, sockaddr(dst))
	if cerr == unix.EINPROGRESS || cerr == unix.EINTR || cerr == unix.EALREADY {
		// Timed out or interrupted: the handshake goes on; wait for it
		// under the poller (a non-blocking descriptor makes the file
		// pollable).
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("sandbox: inner socket: set non-blocking: %w", err)
		}
		f := os.NewFile(uintptr(fd), "inner-tcp")
		defer f.Close()
		if cerr = waitConnect(ctx, f); cerr != nil {
			return nil, fmt.Errorf("sandbox: connect to %s in the sandbox: %w", dst, cerr)
		}
		return fileTCPConn(f, dst)
	}
	// A blocking descriptor: the file is not registered with the poller;
	// net.FileConn registers its duplicate (and makes it non-blocking).
	f := os.NewFile(uintptr(fd), "inner-tcp")
	defer f.Close()
	if cerr != nil {
		return nil, fmt.Errorf("sandbox: connect to %s in the sandbox: %w", dst, cerr)
	}
	return fileTCPConn(f, dst)
}

// fileTCPConn makes a connected socket's file a *net.TCPConn (a
// duplicate; the caller closes f).
func fileTCPConn(f *os.File, dst netip.AddrPort) (*net.TCPConn, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("sandbox: inner connection to %s: %w", dst, err)
	}
	return c.(*net.TCPConn), nil
}

// waitConnect waits until the non-blocking connect on f completes (or ctx
// ends) and returns its result.
func waitConnect(ctx context.Context, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	// Only the context ends the wait (no deadline of its own on f): when
	// the wait fails, ctx.Err() is then already set and is what the
	// caller gets, not a poller timeout that raced the context's timer.
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	var soErr int
	werr := rc.Write(func(fd uintptr) bool {
		var gerr error
		soErr, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if gerr != nil {
			soErr = int(unix.EBADF)
			return true
		}
		// Writable with no error means connected; EINPROGRESS cannot show
		// in SO_ERROR, so a zero before writability is just not done yet.
		if soErr == 0 {
			if _, perr := unix.Getpeername(int(fd)); perr != nil {
				return false
			}
		}
		return true
	})
	if werr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return werr
	}
	if soErr != 0 {
		return unix.Errno(soErr)
	}
	return nil
}

// sockaddr converts ap for a socket call.
func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
}

// innerSockets is tunstack's end of init's socket channel, the pool in
// front of it, and the sock_diag socket fetched through it.
type innerSockets struct {
	conn *net.UnixConn
	pool *innerPool

	diagMu sync.Mutex // serialises dumps on diagFD, and its fetch and close
	// diagFD is the sock_diag socket once fetched, or -1.
	// +checklocks:diagMu
	diagFD int
	// diagClosed is set by close: no more fetches.
	// +checklocks:diagMu
	diagClosed bool
}

func newInnerSockets(conn *net.UnixConn) *innerSockets {
	return &innerSockets{conn: conn, diagFD: -1, pool: newInnerPool(func(family, n int) ([]int, error) {
		return fetchInner(conn, family, n)
	}, 0)}
}

// diagTimeout bounds each receive of a dump on the sock_diag socket.
const diagTimeout = 2 * time.Second

// withDiag runs fn with the sock_diag socket, fetched from init on first
// use (through the pool's serial fetch: the channel is shared) and kept.
func (s *innerSockets) withDiag(fn func(fd int) error) error {
	s.diagMu.Lock()
	defer s.diagMu.Unlock()
	if s.diagClosed {
		return ErrNoInner
	}
	if s.diagFD < 0 {
		fds, err := s.pool.fetchSerial(unix.AF_NETLINK, 1)
		if err != nil {
			return err
		}
		for _, extra := range fds[1:] {
			unix.Close(extra)
		}
		tv := unix.NsecToTimeval(diagTimeout.Nanoseconds())
		if err := unix.SetsockoptTimeval(fds[0], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fds[0])
			return fmt.Errorf("sandbox: sock_diag socket: SO_RCVTIMEO: %w", err)
		}
		s.diagFD = fds[0]
	}
	return fn(s.diagFD)
}

func (s *innerSockets) get(family int) (int, error) { return s.pool.get(family) }

// close ends the channel (a fetch in flight fails at once) and the pool.
func (s *innerSockets) close() {
	s.conn.Close()
	s.pool.close()
	s.diagMu.Lock()
	defer s.diagMu.Unlock()
	if s.diagFD >= 0 {
		unix.Close(s.diagFD)
		s.diagFD = -1
	}
	s.diagClosed = true
}
