package tun

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// SendFiles sends the files' descriptors and a message over a unix socket
// (SCM_RIGHTS) in one datagram. The caller keeps the files and may close
// them afterwards.
func SendFiles(conn *net.UnixConn, files []*os.File, msg []byte) error {
	if len(msg) == 0 {
		return errors.New("tun: SendFiles needs a non-empty message")
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	rights := unix.UnixRights(fds...)
	n, oobn, err := conn.WriteMsgUnix(msg, rights, nil)
	if err != nil {
		return fmt.Errorf("tun: send fds: %w", err)
	}
	if n != len(msg) || oobn != len(rights) {
		return fmt.Errorf("tun: send fds: short write (%d of %d bytes)", n, len(msg))
	}
	return nil
}

// maxFiles bounds how many descriptors one ReceiveFiles accepts.
const maxFiles = 64

// ReceiveFiles receives the descriptors and message (at most len(buf)
// bytes) sent by SendFiles. The descriptors are made non-blocking and
// close-on-exec; files is empty when the message carried none.
func ReceiveFiles(conn *net.UnixConn, buf []byte, name string) (n int, files []*os.File, err error) {
	oob := make([]byte, unix.CmsgSpace(4*maxFiles))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return 0, nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return 0, nil, fmt.Errorf("tun: parse control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	for _, fd := range fds {
		unix.CloseOnExec(fd)
		// Non-blocking before os.NewFile, so the runtime poller serves it.
		if err := unix.SetNonblock(fd, true); err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return 0, nil, fmt.Errorf("tun: received fd: %w", err)
		}
	}
	for _, fd := range fds {
		files = append(files, os.NewFile(uintptr(fd), name))
	}
	return n, files, nil
}
