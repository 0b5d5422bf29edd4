package control

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// netNS identifies a network namespace twice over: by the device and
// inode of its nsfs file (what /proc/PID/ns/net opens, and what a pidfd
// names), and by those of its /proc/PID/net/dev entry (one per
// namespace), which can be read without ptrace rights over the process:
// a root tunstack that switched to nobody (package harden) has none over
// its root clients. Two processes are in the same namespace when the
// identity both sides have agrees.
type netNS struct {
	ns   [2]uint64 // nsfs dev, ino; zero when not known
	proc [2]uint64 // /proc/PID/net/dev dev, ino; zero when not known
}

func (n netNS) String() string { return fmt.Sprintf("net:[%d] (net/dev inode %d)", n.ns[1], n.proc[1]) }

// same reports whether n and o name the same namespace, comparing an
// identity both know; with none in common it refuses.
func (n netNS) same(o netNS) bool {
	switch {
	case n.ns != [2]uint64{} && o.ns != [2]uint64{}:
		return n.ns == o.ns
	case n.proc != [2]uint64{} && o.proc != [2]uint64{}:
		return n.proc == o.proc
	}
	return false
}

// ownNetNS returns the network namespace this process runs in, by both
// identities.
func ownNetNS() (netNS, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return netNS{}, fmt.Errorf("control: identify own network namespace via /proc/self/ns/net: %w", err)
	}
	own := netNS{ns: [2]uint64{st.Dev, st.Ino}}
	if err := unix.Stat("/proc/self/net/dev", &st); err != nil {
		return netNS{}, fmt.Errorf("control: identify own network namespace via /proc/self/net/dev: %w", err)
	}
	own.proc = [2]uint64{st.Dev, st.Ino}
	return own, nil
}

// peerListener accepts a connection only when its peer is root or this
// process's user, and runs in this process's own network namespace.
//
// The namespace test is what keeps a sandbox out: a process in the
// sandbox (or in any namespace it can create, such as "unshare -n") is in
// another network namespace, and cannot setns back into ours because the
// sandbox's user namespace does not own it. Every failure to establish
// the peer's namespace refuses the connection.
type peerListener struct {
	net.Listener
	own netNS
	log *slog.Logger
}

// Accept implements net.Listener, dropping refused connections.
func (l *peerListener) Accept() (net.Conn, error) {
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

func (l *peerListener) check(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("connection of type %T is not a unix socket", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var (
		cred       *unix.Ucred
		cerr, perr error
		pidfd      = -1
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		pidfd, perr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	}); err != nil {
		return err
	}
	switch {
	case perr == nil:
		defer unix.Close(pidfd)
	case errors.Is(perr, unix.ENOPROTOOPT):
		pidfd = -1 // before Linux 6.5: the pid alone
	default:
		return fmt.Errorf("peer pidfd: %w", perr)
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("peer uid %d is neither root nor %d", cred.Uid, os.Geteuid())
	}
	ns, err := peerNetNS(int(cred.Pid), pidfd)
	if err != nil {
		return err
	}
	if !ns.same(l.own) {
		return fmt.Errorf("peer pid %d is in network namespace %v, not tunstack's %v", cred.Pid, ns, l.own)
	}
	return nil
}

// peerNetNS finds the network namespace of the peer process pid, whose
// pidfd (or -1) came with the connection. With a pidfd the kernel names
// the namespace directly (Linux 6.11); otherwise /proc/PID/ns/net is read,
// and the pidfd, when there is one, proves that pid still named the peer
// while it was read.
func peerNetNS(pid, pidfd int) (netNS, error) {
	if pid <= 0 {
		return netNS{}, fmt.Errorf("peer pid %d: the peer's process is not visible from here", pid)
	}
	if pidfd >= 0 {
		nsfd, err := unix.IoctlRetInt(pidfd, unix.PIDFD_GET_NET_NAMESPACE)
		if err == nil {
			defer unix.Close(nsfd)
			var st unix.Stat_t
			if err := unix.Fstat(nsfd, &st); err != nil {
				return netNS{}, fmt.Errorf("peer pid %d: stat its network namespace: %w", pid, err)
			}
			return netNS{ns: [2]uint64{st.Dev, st.Ino}}, nil
		}
		// EACCES or EPERM: no ptrace rights over the peer (a root
		// client of an instance that switched to nobody), or a filter
		// that refuses the ioctl; /proc/PID/net/dev still names its
		// namespace.
		if !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
			return netNS{}, fmt.Errorf("peer pid %d: network namespace from pidfd: %w", pid, err)
		}
	}
	ns, err := procNetNS(pid)
	if err != nil {
		return netNS{}, err
	}
	if pidfd >= 0 {
		// Signal 0 checks existence; EPERM still means it exists.
		if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil && !errors.Is(err, unix.EPERM) {
			return netNS{}, fmt.Errorf("peer pid %d: gone while checked: %w", pid, err)
		}
	}
	return ns, nil
}

// procNetNS reads the network namespace of pid from /proc: by its ns
// link when we may follow it, else by its net/dev entry.
func procNetNS(pid int) (netNS, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err == nil {
		return netNS{ns: [2]uint64{st.Dev, st.Ino}}, nil
	}
	path := fmt.Sprintf("/proc/%d/net/dev", pid)
	if err := unix.Stat(path, &st); err != nil {
		return netNS{}, fmt.Errorf("peer pid %d: stat %s: %w", pid, path, err)
	}
	return netNS{proc: [2]uint64{st.Dev, st.Ino}}, nil
}
