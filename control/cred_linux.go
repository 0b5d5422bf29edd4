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
	ns, err := NetNSKey(int(cred.Pid))
	if err != nil {
		return fmt.Errorf("peer pid %d: %w", cred.Pid, err)
	}
	if ns == deny {
		return fmt.Errorf("peer pid %d is inside the sandbox (%s)", cred.Pid, ns)
	}
	return nil
}

// NetNSKey identifies the network namespace of process pid by the device
// and inode of its /proc/PID/net/dev (one proc entry per namespace).
// Unlike the /proc/PID/ns/net link, it can be read without ptrace rights
// over the process, which a root tunstack that switched to nobody (package
// harden) no longer has over root peers.
func NetNSKey(pid int) (string, error) {
	var st unix.Stat_t
	path := fmt.Sprintf("/proc/%d/net/dev", pid)
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("network namespace: stat %s: %w", path, err)
	}
	return fmt.Sprintf("net-dev:%d:%d", st.Dev, st.Ino), nil
}
