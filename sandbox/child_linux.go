package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/fdpass"
	"github.com/tunstack/tunstack/tun"
)

// IsChild reports whether this process is a sandbox child, i.e. whether
// main must call ChildMain.
func IsChild() bool { return len(os.Args) > 1 && os.Args[1] == childArg }

// ChildMain runs a child side (see the package documentation): the init
// child, the exec child, or the attach child. It never returns.
func ChildMain() {
	parent := os.Getppid()
	ctrl := os.NewFile(3, "sandbox-control")
	fc, err := net.FileConn(ctrl)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tunstack: sandbox: control socket: %v\n", err)
		os.Exit(125)
	}
	conn := fc.(*net.UnixConn)
	role := ""
	if len(os.Args) > 2 {
		role = os.Args[2]
	}
	switch role {
	case roleInit:
		// fd 4 is init's owner socket (SocketHolders): never the
		// command's.
		unix.CloseOnExec(4)
		// fd 5 is init's socket channel (DialInner): never the
		// command's either.
		unix.CloseOnExec(5)
		initMain(conn, ctrl)
	case roleExec:
		ctrl.Close()
		execMain(conn, parent)
	default:
		ctrl.Close()
		attachMain(conn)
	}
}

func fail(conn *net.UnixConn, err error) {
	b, _ := json.Marshal(childReply{Error: err.Error()})
	conn.Write(b)
	os.Exit(125)
}

// readConfig reads the parent's configuration message.
func readConfig(conn *net.UnixConn) (childConfig, error) {
	var cfg childConfig
	buf := make([]byte, 64<<10)
	n, err := conn.Read(buf)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := json.Unmarshal(buf[:n], &cfg); err != nil {
		return cfg, fmt.Errorf("decode config: %w", err)
	}
	return cfg, nil
}

// attachMain is the child nsenter starts in an existing namespace.
func attachMain(conn *net.UnixConn) {
	cfg, err := readConfig(conn)
	if err == nil && !cfg.Attach {
		err = errors.New("child started without a role for a command")
	}
	if err == nil {
		err = attachSetup(conn, &cfg)
	}
	fail(conn, err)
}

// execMain is the exec child: in the command's own namespaces it
// configures the network, passes the TUN device to tunstack, waits for
// the go-ahead and executes the command.
func execMain(conn *net.UnixConn, parent int) {
	cfgFile := os.NewFile(4, "sandbox-config")
	var cfg childConfig
	err := json.NewDecoder(io.LimitReader(cfgFile, 1<<20)).Decode(&cfg)
	cfgFile.Close()
	if err != nil {
		fail(conn, fmt.Errorf("read config from init: %w", err))
	}
	path, err := execSetup(conn, &cfg)
	if err != nil {
		fail(conn, err)
	}
	conn.Close()
	// PR_SET_PDEATHSIG belongs to a thread, and the runtime may exec from
	// any thread: the one set at fork is lost. Set it again on the thread
	// that execs, so the command dies with init, even by SIGKILL.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "tunstack: sandbox: set parent-death signal: %v\n", err)
		os.Exit(125)
	}
	if os.Getppid() != parent {
		os.Exit(125) // init died before the prctl took effect
	}
	if err := syscall.Exec(path, cfg.Command, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "tunstack: %s: %v\n", cfg.Command[0], err)
		os.Exit(126)
	}
}

// execSetup does everything before exec and returns the command's path.
func execSetup(conn *net.UnixConn, cfg *childConfig) (string, error) {
	if len(cfg.Command) == 0 {
		return "", errors.New("no command")
	}
	path, err := exec.LookPath(cfg.Command[0])
	if err != nil {
		// Reported by the parent as exit status 127 (not found) or 126
		// (found but not executable), as shells and podman do.
		reply, code := lookPathReply(cfg.Command[0], err)
		b, _ := json.Marshal(reply)
		conn.Write(b)
		os.Exit(code)
	}
	dev, err := configureNetwork(cfg)
	if err != nil {
		return "", err
	}
	reply := childReply{TunName: dev.Name, Offload: dev.Offload, Notes: cfg.Notes}
	msg, _ := json.Marshal(reply)
	err = fdpass.Send(conn, msg, dev.Files()...)
	dev.Close()
	if err != nil {
		return "", err
	}
	// Wait for the go-ahead: the parent serves the device by now.
	buf := make([]byte, 16)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "go" {
		os.Exit(125)
	}
	return path, nil
}

// configureNetwork brings lo up and creates and configures the TUN device.
func configureNetwork(cfg *childConfig) (*tun.Device, error) {
	d := &cfg.Device
	if d.Unconfigured {
		return openUnconfigured(d)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("set lo up: %w", err)
	}
	dev, err := tun.Open(d.tunConfig())
	if err != nil {
		return nil, err
	}
	if err := configureLink(dev.Name, d); err != nil {
		dev.Close()
		return nil, err
	}
	return dev, nil
}

func configureLink(name string, d *DeviceConfig) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkSetMTU(link, d.MTU); err != nil {
		return fmt.Errorf("set %s mtu %d: %w", name, d.MTU, err)
	}
	// Via netlink: the SIOCSIFTXQLEN ioctl is refused in a user namespace.
	if err := netlink.LinkSetTxQLen(link, d.TxQueueLen); err != nil {
		return fmt.Errorf("set %s txqueuelen %d: %w", name, d.TxQueueLen, err)
	}
	if d.MAC != "" {
		mac, err := net.ParseMAC(d.MAC)
		if err != nil {
			return fmt.Errorf("MAC address %q: %w", d.MAC, err)
		}
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("set %s address %s: %w", name, d.MAC, err)
		}
	}
	for _, p := range []struct {
		addr  netip.Prefix
		flags int
	}{{d.Addr4, 0}, {d.Addr6, unix.IFA_F_NODAD}} {
		if !p.addr.IsValid() {
			continue
		}
		a := &netlink.Addr{IPNet: ipNet(p.addr), Flags: p.flags}
		if err := netlink.AddrAdd(link, a); err != nil {
			return fmt.Errorf("add address %s to %s: %w", p.addr, name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	for _, gw := range []netip.Addr{d.Gateway4, d.Gateway6} {
		if !gw.IsValid() {
			continue
		}
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}
		if err := netlink.RouteAdd(r); err != nil {
			return fmt.Errorf("add default route via %s: %w", gw, err)
		}
	}
	return nil
}

// openUnconfigured opens a device its creator configures (rootlesskit's
// persistent tap0): only the transmit queue is lengthened, best effort.
func openUnconfigured(d *DeviceConfig) (*tun.Device, error) {
	dev, err := tun.Open(d.tunConfig())
	if err != nil {
		return nil, err
	}
	if link, err := netlink.LinkByName(dev.Name); err == nil && link.Attrs().TxQLen < d.TxQueueLen {
		netlink.LinkSetTxQLen(link, d.TxQueueLen)
	}
	return dev, nil
}

// lookPathReply classifies a failed lookup of the command: a name no
// directory of PATH holds, or a path that does not exist, is "not found"
// (127); anything else (a file without execute permission, a directory, a
// path through a file) is "not executable" (126).
func lookPathReply(name string, err error) (childReply, int) {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return childReply{NotFound: name}, 127
	}
	var reason error = err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		reason = pe.Err
	} else if ee := (*exec.Error)(nil); errors.As(err, &ee) {
		reason = ee.Err
	}
	if errors.Is(reason, fs.ErrPermission) {
		reason = syscall.EACCES // "permission denied", as the shell says
	}
	return childReply{NotExecutable: name + ": " + reason.Error()}, 126
}
