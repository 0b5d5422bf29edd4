package tun

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// SendFile sends f's descriptor and a message over a unix socket
// (SCM_RIGHTS). The caller keeps f and may close it afterwards.
func SendFile(conn *net.UnixConn, f *os.File, msg []byte) error {
	if len(msg) == 0 {
		return errors.New("tun: SendFile needs a non-empty message")
	}
	rights := unix.UnixRights(int(f.Fd()))
	n, oobn, err := conn.WriteMsgUnix(msg, rights, nil)
	if err != nil {
		return fmt.Errorf("tun: send fd: %w", err)
	}
	if n != len(msg) || oobn != len(rights) {
		return fmt.Errorf("tun: send fd: short write (%d of %d bytes)", n, len(msg))
	}
	return nil
}

// ReceiveFile receives one descriptor and its message (at most len(buf)
// bytes) sent by SendFile. It returns the message length; file is nil when
// the message carried no descriptor.
func ReceiveFile(conn *net.UnixConn, buf []byte, name string) (n int, file *os.File, err error) {
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return 0, nil, err
	}
	if oobn == 0 {
		return n, nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return 0, nil, fmt.Errorf("tun: parse control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) == 0 {
		return n, nil, nil
	}
	for _, extra := range fds[1:] {
		unix.Close(extra)
	}
	unix.CloseOnExec(fds[0])
	// Non-blocking before os.NewFile, so the runtime poller serves it.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return 0, nil, fmt.Errorf("tun: received fd: %w", err)
	}
	return n, os.NewFile(uintptr(fds[0]), name), nil
}
