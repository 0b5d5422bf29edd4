package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/fdpass"
	"github.com/tunstack/tunstack/tun"
)

// Config describes a sandbox to start.
type Config struct {
	// Command is the program and its arguments.
	Command []string
	// Device is the TUN device to create in the sandbox.
	Device DeviceConfig
	// ResolvConf, if not empty, replaces /etc/resolv.conf for the command.
	ResolvConf string
	// HidePaths are directories the command must not see into (they are
	// covered with an empty tmpfs in its mount namespace).
	HidePaths []string
	// HostCaps (root only) runs the command without a user namespace:
	// it keeps root's capabilities over the host, so it can leave its
	// network namespace. Without it, root's command runs in a user
	// namespace that maps root to root (file access is kept) and holds
	// capabilities only over the sandbox's own namespaces.
	HostCaps bool
	// NoPIDNS runs the command in tunstack's PID namespace: it sees the
	// host's processes, and what it leaves running outlives it. By
	// default the command is the only child of an init in a new PID
	// namespace, and everything there dies with the command.
	NoPIDNS bool
	// Stdin, Stdout, Stderr are the command's; nil means the null device.
	Stdin  *os.File
	Stdout *os.File
	Stderr *os.File
}

// Sandbox is a started sandbox whose command has not run yet (see Release).
type Sandbox struct {
	cmd  *exec.Cmd
	ctrl *net.UnixConn
	// pid is the command's process ID, learnt from the credentials of the
	// exec child's message (the init child is cmd).
	pid int
	// attachPID is the target of an attached namespace (see Attach).
	attachPID int
	attached  bool
	// owners asks the init child who holds which socket (nil when
	// attached: there is no init).
	owners *ownerQueries
	// inner makes sockets in the command's network namespace through
	// init (DialInner; nil when attached: there is no init).
	inner *innerSockets
	// Device is the TUN device, open in this process.
	Device *tun.Device
	// Notes are non-fatal problems the child reported.
	Notes []string
}

// Start creates the namespace and the TUN device and returns once the
// device is in this process. The command waits for Release.
func Start(cfg Config) (*Sandbox, error) {
	if len(cfg.Command) == 0 {
		return nil, errors.New("sandbox: no command")
	}
	var err error
	if cfg.Device, err = cfg.Device.prepared(); err != nil {
		return nil, err
	}
	if cfg.Device.TAP || cfg.Device.Unconfigured {
		return nil, errors.New("sandbox: a TAP or unconfigured device is for Attach only")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sandbox: find own executable: %w", err)
	}
	mode, err := privilegeMode(cfg.HostCaps)
	if err != nil {
		return nil, err
	}
	ctrl, childEnd, err := controlPair()
	if err != nil {
		return nil, err
	}
	ownersEnd, initOwners, err := ownersPair()
	if err != nil {
		ctrl.Close()
		childEnd.Close()
		return nil, err
	}
	innerEnd, initInner, err := innerPair()
	if err != nil {
		ctrl.Close()
		childEnd.Close()
		ownersEnd.Close()
		initOwners.Close()
		return nil, err
	}
	cmd := exec.Command(self, childArg, roleInit)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	cmd.ExtraFiles = []*os.File{childEnd, initOwners, initInner}
	closeOurs := func() {
		ctrl.Close()
		ownersEnd.Close()
		innerEnd.Close()
	}
	if cmd.SysProcAttr, err = initAttr(mode, !cfg.NoPIDNS); err != nil {
		closeOurs()
		childEnd.Close()
		initOwners.Close()
		initInner.Close()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	err = cmd.Start()
	// Our copy of the child's end must go now: while we hold it, a child
	// that dies during setup never shows as EOF, and the handshake hangs.
	childEnd.Close()
	initOwners.Close()
	initInner.Close()
	if err != nil {
		closeOurs()
		return nil, explainStart(mode, err)
	}
	sb := &Sandbox{cmd: cmd, ctrl: ctrl, owners: &ownerQueries{conn: ownersEnd, rd: bufio.NewReader(ownersEnd)},
		inner: newInnerSockets(innerEnd)}
	if err := sb.handshake(cfg, mode); err != nil {
		ctrl.Close()
		ownersEnd.Close()
		sb.inner.close()
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	return sb, nil
}

// privilegeMode picks how the command is confined.
func privilegeMode(hostCaps bool) (string, error) {
	switch {
	case os.Geteuid() != 0 && hostCaps:
		return "", errors.New("sandbox: --host-caps needs root (an unprivileged user has no host capabilities to keep)")
	case os.Geteuid() != 0:
		return modeRootless, nil
	case hostCaps:
		return modeHost, nil
	}
	return modeRoot, nil
}

// initAttr creates the init child's namespaces: a mount namespace for the
// covers, a PID namespace (when pidns) in which it is PID 1, and, unless
// root keeps its host capabilities, a user namespace and an empty network
// namespace, so that even the init child holds nothing on the host's
// network. The command's namespaces are created beneath these by the init
// child (see execChildAttr). Its own process group keeps it out of the
// terminal's signals; the command takes the foreground.
func initAttr(mode string, pidns bool) (*syscall.SysProcAttr, error) {
	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS,
		// If tunstack dies, so does init, and with it the sandbox.
		Pdeathsig: syscall.SIGKILL,
		Setpgid:   true,
	}
	if pidns {
		attr.Cloneflags |= syscall.CLONE_NEWPID
	}
	switch mode {
	case modeRootless:
		attr.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	case modeRoot:
		uids, gids, err := identityMaps()
		if err != nil {
			return nil, err
		}
		attr.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET
		attr.UidMappings, attr.GidMappings = uids, gids
		attr.GidMappingsEnableSetgroups = setgroupsAllowed()
	}
	return attr, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// explainStart names the fix for the usual reasons a namespace cannot be
// created.
func explainStart(mode string, err error) error {
	if isNamespaceRefusal(err) {
		switch mode {
		case modeRootless:
			return fmt.Errorf("sandbox: cannot create a user namespace (%v): unprivileged user namespaces are disabled; "+
				"enable them with sysctl -w kernel.unprivileged_userns_clone=1 (Debian), "+
				"sysctl -w user.max_user_namespaces=15000, or "+
				"sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu), or run as root", err)
		case modeRoot:
			return fmt.Errorf("sandbox: cannot create the sandbox's user namespace (%v): "+
				"check sysctl user.max_user_namespaces, or run with --host-caps (no user namespace: the command keeps root's capabilities)", err)
		}
		return fmt.Errorf("sandbox: cannot create a namespace: %w", err)
	}
	return fmt.Errorf("sandbox: start child: %w", err)
}

// isNamespaceRefusal reports whether a clone failed for want of
// permission to create a namespace.
func isNamespaceRefusal(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EACCES)
}

func (sb *Sandbox) handshake(cfg Config, mode string) error {
	return sb.exchange(childConfig{
		Mode: mode, PIDNS: !cfg.NoPIDNS, Command: cfg.Command, Device: cfg.Device,
		ResolvConf: cfg.ResolvConf, HidePaths: cfg.HidePaths,
	})
}

// exchange sends the child its configuration (cc.Device prepared) and
// receives the device.
func (sb *Sandbox) exchange(cc childConfig) error {
	b, err := json.Marshal(cc)
	if err != nil {
		return err
	}
	if _, err := sb.ctrl.Write(b); err != nil {
		return fmt.Errorf("sandbox: send config: %w", err)
	}
	dev, reply, pid, err := receiveDevice(sb.ctrl)
	if err != nil {
		return err
	}
	if err := reply.err(); err != nil {
		return err
	}
	dev.TAP = cc.Device.TAP
	sb.Device = dev
	sb.Notes = reply.Notes
	sb.pid = pid
	return nil
}

// Pid returns the command's process ID as this process sees it (for an
// attached namespace, the target's, or 0). The command runs in the
// sandbox's network namespace; its parent, the init child, does not.
func (sb *Sandbox) Pid() int {
	if sb.attached {
		return sb.attachPID
	}
	return sb.pid
}

// Release lets the command run.
func (sb *Sandbox) Release() error {
	defer sb.ctrl.Close()
	if _, err := sb.ctrl.Write([]byte("go")); err != nil {
		return fmt.Errorf("sandbox: release command: %w", err)
	}
	return nil
}

// Signal sends sig to the command (through the init child, which
// forwards it).
func (sb *Sandbox) Signal(sig os.Signal) error { return sb.cmd.Process.Signal(sig) }

// Kill kills the command (used when setup fails after Start).
func (sb *Sandbox) Kill() {
	sb.ctrl.Close()
	sb.cmd.Process.Kill()
}

// closeInner ends the socket channel to init and closes the pooled
// sockets.
func (sb *Sandbox) closeInner() {
	if sb.inner != nil {
		sb.inner.close()
	}
}

// closeOwners closes our end of init's owner socket, once init is gone.
func (sb *Sandbox) closeOwners() {
	if q := sb.owners; q != nil {
		q.mu.Lock()
		q.conn.Close()
		q.mu.Unlock()
	}
}

// Wait waits for the command and returns its exit status the way a shell
// reports it: the exit code, or 128+N when killed by signal N (the init
// child exits with that status).
func (sb *Sandbox) Wait() (int, error) {
	err := sb.cmd.Wait()
	sb.closeOwners()
	sb.closeInner()
	st, ok := sb.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return 125, err
	}
	switch {
	case st.Exited():
		return st.ExitStatus(), nil
	case st.Signaled():
		return 128 + int(st.Signal()), nil
	}
	return 125, err
}

// controlPair creates the parent↔child control socket: the parent's end as
// a *net.UnixConn, the child's as a file to pass in ExtraFiles.
// ownersPair is the stream socket on which init answers socket-holder
// queries (SocketHolders): our end and the init child's.
func ownersPair() (net.Conn, *os.File, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "sandbox-owners")
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		unix.Close(pair[1])
		return nil, nil, fmt.Errorf("sandbox: owners socket: %w", err)
	}
	return c, os.NewFile(uintptr(pair[1]), "sandbox-owners-init"), nil
}

func controlPair() (*net.UnixConn, *os.File, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: socketpair: %w", err)
	}
	// The credentials on the exec child's messages name its pid as we
	// see it, across the PID namespace.
	if err := unix.SetsockoptInt(pair[0], unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(pair[0])
		unix.Close(pair[1])
		return nil, nil, fmt.Errorf("sandbox: SO_PASSCRED: %w", err)
	}
	parentEnd := os.NewFile(uintptr(pair[0]), "sandbox-control")
	childEnd := os.NewFile(uintptr(pair[1]), "sandbox-control-child")
	fc, err := net.FileConn(parentEnd)
	parentEnd.Close()
	if err != nil {
		childEnd.Close()
		return nil, nil, fmt.Errorf("sandbox: control socket: %w", err)
	}
	return fc.(*net.UnixConn), childEnd, nil
}

// receiveDevice reads the child's reply, the TUN queues passed with it,
// and the sender's pid. A reply that reports a failure comes back with no
// device and no error.
func receiveDevice(ctrl *net.UnixConn) (*tun.Device, childReply, int, error) {
	var reply childReply
	buf := make([]byte, 64<<10)
	n, files, pid, err := fdpass.ReceiveNonblockCreds(ctrl, buf, "/dev/net/tun")
	if err != nil || n == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New("child exited during setup")
		}
		return nil, reply, 0, fmt.Errorf("sandbox: %w", err)
	}
	if err := json.Unmarshal(buf[:n], &reply); err != nil || reply.err() != nil || len(files) == 0 {
		for _, f := range files {
			f.Close()
		}
		switch {
		case err != nil:
			return nil, reply, 0, fmt.Errorf("sandbox: bad reply from child: %w", err)
		case reply.err() != nil:
			return nil, reply, 0, nil
		}
		return nil, reply, 0, errors.New("sandbox: child sent no TUN device")
	}
	return &tun.Device{File: files[0], Queues: files[1:], Name: reply.TunName, Offload: reply.Offload}, reply, pid, nil
}
