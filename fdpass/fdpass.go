// Package fdpass passes open file descriptors over unix sockets
// (SCM_RIGHTS): the one place that builds and parses those control
// messages. The sandbox hands its TUN queues back with it, the control
// socket hands out exported stack sockets, and an exported listener passes
// each accepted connection.
//
// Received descriptors are always close-on-exec, and a message never
// leaks a descriptor: extras beyond what a caller wants are closed.
package fdpass

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// MaxFiles bounds how many descriptors one message may carry; the receive
// buffer has room for that many.
const MaxFiles = 64

// Send sends msg (at least one byte: a message of no data is not
// delivered with its descriptors on every socket type) with the files'
// descriptors in one message. The caller keeps the files and may close
// them once Send returns.
func Send(conn *net.UnixConn, msg []byte, files ...*os.File) error {
	if len(msg) == 0 {
		return errors.New("fdpass: send needs a non-empty message")
	}
	if len(files) > MaxFiles {
		return fmt.Errorf("fdpass: send %d descriptors: at most %d fit one message", len(files), MaxFiles)
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	rights := unix.UnixRights(fds...)
	n, oobn, err := conn.WriteMsgUnix(msg, rights, nil)
	if err != nil {
		return fmt.Errorf("fdpass: send %d descriptors: %w", len(fds), err)
	}
	if n != len(msg) || oobn != len(rights) {
		return fmt.Errorf("fdpass: send %d descriptors: short write (%d of %d bytes)", len(fds), n, len(msg))
	}
	return nil
}

// ReadMsg is one receive of up to len(buf) bytes with room for MaxFiles
// descriptors. It returns the byte count and the descriptors that came
// with them, close-on-exec. The caller owns the descriptors, also when
// err is not nil.
func ReadMsg(conn *net.UnixConn, buf []byte) (n int, fds []int, err error) {
	n, fds, _, err = readMsg(conn, buf, false)
	return n, fds, err
}

// readMsg is ReadMsg that, with creds, also has room for the sender's
// SCM_CREDENTIALS (the socket needs SO_PASSCRED) and returns its pid (0
// when none came).
func readMsg(conn *net.UnixConn, buf []byte, creds bool) (n int, fds []int, pid int, err error) {
	size := unix.CmsgSpace(4 * MaxFiles)
	if creds {
		size += unix.CmsgSpace(unix.SizeofUcred)
	}
	oob := make([]byte, size)
	n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
	fds = Rights(oob[:oobn])
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
	if creds {
		pid = senderPID(oob[:oobn])
	}
	if err == nil && flags&unix.MSG_CTRUNC != 0 {
		err = fmt.Errorf("control message truncated: more than %d descriptors", MaxFiles)
	}
	return n, fds, pid, err
}

// senderPID returns the pid of an SCM_CREDENTIALS message in oob, or 0.
func senderPID(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if cred, err := unix.ParseUnixCredentials(&m); err == nil {
			return int(cred.Pid)
		}
	}
	return 0
}

// Rights returns the descriptors carried in the SCM_RIGHTS control
// messages of oob (the out-of-band bytes of a recvmsg). The caller owns
// them. Malformed control data yields none.
func Rights(oob []byte) []int {
	if len(oob) == 0 {
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

// Receive receives one message sent by Send: its bytes into buf and its
// descriptors as files named name. A descriptor in non-blocking mode
// becomes a file served by the runtime poller (see os.NewFile); files is
// empty when the message carried none.
func Receive(conn *net.UnixConn, buf []byte, name string) (n int, files []*os.File, err error) {
	return receive(conn, buf, name, false)
}

// ReceiveNonblock is Receive that first puts every descriptor in
// non-blocking mode, so each file is served by the runtime poller and
// supports deadlines (a TUN queue, whose reader is woken by one).
func ReceiveNonblock(conn *net.UnixConn, buf []byte, name string) (n int, files []*os.File, err error) {
	return receive(conn, buf, name, true)
}

// ReceiveNonblockCreds is ReceiveNonblock that also returns the sender's
// pid from its SCM_CREDENTIALS (0 when it sent none; the receiving socket
// needs SO_PASSCRED). The kernel fills the credentials in, so the pid can
// be trusted as far as the pid namespace allows.
func ReceiveNonblockCreds(conn *net.UnixConn, buf []byte, name string) (n int, files []*os.File, pid int, err error) {
	n, fds, pid, err := readMsg(conn, buf, true)
	files, err = toFiles(fds, err, name, true)
	if err != nil {
		return 0, nil, 0, err
	}
	return n, files, pid, nil
}

func receive(conn *net.UnixConn, buf []byte, name string, nonblock bool) (int, []*os.File, error) {
	n, fds, err := ReadMsg(conn, buf)
	files, err := toFiles(fds, err, name, nonblock)
	if err != nil {
		return 0, nil, err
	}
	return n, files, nil
}

// toFiles turns received descriptors into files, closing them all on err.
func toFiles(fds []int, err error, name string, nonblock bool) ([]*os.File, error) {
	if err != nil {
		closeAll(fds)
		return nil, fmt.Errorf("fdpass: receive: %w", err)
	}
	if nonblock {
		for _, fd := range fds {
			if err := unix.SetNonblock(fd, true); err != nil {
				closeAll(fds)
				return nil, fmt.Errorf("fdpass: received descriptor %d: set non-blocking: %w", fd, err)
			}
		}
	}
	files := make([]*os.File, 0, len(fds))
	for _, fd := range fds {
		files = append(files, os.NewFile(uintptr(fd), name))
	}
	return files, nil
}

// ReceiveFile receives one message that carries one descriptor, as a file
// named name; further descriptors in the message are closed. f is nil
// when the message carried none; the peer's close is an error wrapping
// io.EOF on a stream socket and n == 0 with no error on a seqpacket one.
func ReceiveFile(conn *net.UnixConn, buf []byte, name string) (n int, f *os.File, err error) {
	n, files, err := Receive(conn, buf, name)
	if err != nil || len(files) == 0 {
		return n, nil, err
	}
	for _, extra := range files[1:] {
		extra.Close()
	}
	return n, files[0], nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
