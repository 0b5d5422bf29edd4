package control

import (
	"fmt"
	"log/slog"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// credListener accepts only connections from this process's user (or
// root) whose process is not in the denied network namespace.
type credListener struct {
	net.Listener
	denied func() string
	log    *slog.Logger
}

// Accept implements net.Listener, dropping refused connections.
func (l *credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := l.check(c); err != nil {
			l.log.Warn("control: connection refused", "err", err)
			c.Close()
			continue
		}
		return c, nil
	}
}

func (l *credListener) check(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("peer uid %d is neither root nor %d", cred.Uid, os.Geteuid())
	}
	if l.denied == nil {
		return nil
	}
	deny := l.denied()
	if deny == "" || cred.Pid == 0 {
		return nil
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cred.Pid))
	if err == nil && ns == deny {
		return fmt.Errorf("peer pid %d is inside the sandbox (%s)", cred.Pid, ns)
	}
	return nil
}
