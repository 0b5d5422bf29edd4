package relay

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel sockets are read and written with raw system calls
// (unix.RawSyscall, as gVisor's rawfile does for its non-blocking
// descriptors). A raw call holds its P until it returns, so each one is
// made non-blocking by its own flag (MSG_DONTWAIT), whatever mode the
// descriptor is in (a File() of the connection and its Fd() would switch
// the shared description to blocking); when it would block, the runtime's
// poller waits instead (syscall.RawConn). What this saves is the runtime's
// syscall bookkeeping, and on a quiet stack that is most of a small
// message's cost: every ordinary system call wakes the runtime's monitor
// thread (sysmon) when it sleeps, and the monitor then polls every 20 µs
// for a millisecond, two context switches a poll on the CPUs the
// sandbox's programs need. A profile of 1-byte round trips had it at a
// quarter of the process (docs/PERFORMANCE.md).

// readerOf returns what Copy reads c through: a raw reader for a kernel
// socket, c itself otherwise.
func readerOf(c Conn) io.Reader {
	if rc := rawConnOf(c); rc != nil {
		r := &rawReader{rc: rc}
		r.fn = r.read
		return r
	}
	return c
}

// writerOf returns what Copy writes c through: a raw writer for a kernel
// socket, c itself otherwise.
func writerOf(c Conn) io.Writer {
	if rc := rawConnOf(c); rc != nil {
		w := &rawWriter{rc: rc}
		w.fn = w.write
		return w
	}
	return c
}

// closeWrite half-closes c: a kernel socket through a raw shutdown(2),
// which wakes nobody (as the reads and writes above), anything else
// through its CloseWrite.
func closeWrite(c Conn) error {
	rc := rawConnOf(c)
	if rc == nil {
		return c.CloseWrite()
	}
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.RawSyscall(unix.SYS_SHUTDOWN, fd, unix.SHUT_WR, 0)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return os.NewSyscallError("shutdown", errno)
	}
	return nil
}

// rawConnOf returns c's RawConn when c is exactly a kernel TCP or Unix
// stream socket, nil otherwise. Exactly: a type that wraps one to count or
// limit what passes would still have SyscallConn, and must keep its Read
// and Write.
func rawConnOf(c Conn) syscall.RawConn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nil
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// rawReader reads a kernel socket. It is used by one goroutine at a time
// (one direction of a Pipe); fn is read bound once, so that RawConn.Read
// gets no fresh closure per call.
type rawReader struct {
	rc    syscall.RawConn
	buf   []byte
	n     int
	errno unix.Errno
	fn    func(fd uintptr) bool
}

// Read implements io.Reader: io.EOF once the peer has closed its side.
func (r *rawReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.buf = p
	err := r.rc.Read(r.fn)
	r.buf = nil
	switch {
	case err != nil:
		return 0, err
	case r.errno != 0:
		return 0, os.NewSyscallError("read", r.errno)
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}

func (r *rawReader) read(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // the poller waits for more
		case 0:
			r.n, r.errno = int(n), 0
		default:
			r.n, r.errno = 0, e
		}
		return true
	}
}

// rawWriter writes a kernel socket, all of each buffer unless the socket
// fails. Like rawReader it serves one goroutine at a time.
type rawWriter struct {
	rc    syscall.RawConn
	buf   []byte
	done  int
	errno unix.Errno
	fn    func(fd uintptr) bool
}

// Write implements io.Writer.
func (w *rawWriter) Write(p []byte) (int, error) {
	w.buf, w.done, w.errno = p, 0, 0
	err := w.rc.Write(w.fn)
	n := w.done
	w.buf = nil
	if err == nil && w.errno != 0 {
		err = os.NewSyscallError("write", w.errno)
	}
	return n, err
}

func (w *rawWriter) write(fd uintptr) bool {
	for w.done < len(w.buf) {
		rest := w.buf[w.done:]
		// MSG_NOSIGNAL: a reset peer is an EPIPE error, never a SIGPIPE.
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			w.done += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false // the poller waits for room
		default:
			w.errno = e
			return true
		}
	}
	return true
}
