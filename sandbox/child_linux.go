package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/tun"
)

// IsChild reports whether this process is a sandbox child, i.e. whether
// main must call ChildMain.
func IsChild() bool { return len(os.Args) > 1 && os.Args[1] == childArg }

// ChildMain runs the child side: configure the namespace, pass the TUN
// device back, wait for the go-ahead and execute the command. It never
// returns.
func ChildMain() {
	parent := os.Getppid()
	f := os.NewFile(3, "sandbox-control")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tunstack: sandbox: control socket: %v\n", err)
		os.Exit(125)
	}
	conn := fc.(*net.UnixConn)
	path, argv, err := childSetup(conn)
	if err != nil {
		fail(conn, err)
	}
	conn.Close()
	// PR_SET_PDEATHSIG belongs to a thread, and the runtime may exec from
	// any thread: the one set at fork is lost. Set it again on the thread
	// that execs, so the command dies with tunstack, even by SIGKILL.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "tunstack: sandbox: set parent-death signal: %v\n", err)
		os.Exit(125)
	}
	if os.Getppid() != parent {
		os.Exit(125) // tunstack died before the prctl took effect
	}
	if err := syscall.Exec(path, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "tunstack: %s: %v\n", argv[0], err)
		os.Exit(126)
	}
}

func fail(conn *net.UnixConn, err error) {
	b, _ := json.Marshal(childReply{Error: err.Error()})
	conn.Write(b)
	os.Exit(125)
}

// childSetup does everything before exec and returns the command to run.
func childSetup(conn *net.UnixConn) (string, []string, error) {
	buf := make([]byte, 64<<10)
	n, err := conn.Read(buf)
	if err != nil {
		return "", nil, fmt.Errorf("read config: %w", err)
	}
	var cfg childConfig
	if err := json.Unmarshal(buf[:n], &cfg); err != nil {
		return "", nil, fmt.Errorf("decode config: %w", err)
	}
	if cfg.Attach {
		return "", nil, attachSetup(conn, &cfg)
	}
	if len(cfg.Command) == 0 {
		return "", nil, errors.New("no command")
	}
	path, err := exec.LookPath(cfg.Command[0])
	if err != nil {
		// Reported by the parent as exit status 127.
		b, _ := json.Marshal(childReply{Error: "notfound:" + cfg.Command[0]})
		conn.Write(b)
		os.Exit(127)
	}
	var reply childReply
	if cfg.ResolvConf != "" {
		if note := mountResolvConf(cfg.ResolvConf); note != "" {
			reply.Notes = append(reply.Notes, note)
		}
	}
	for _, dir := range cfg.HidePaths {
		if note := hidePath(dir); note != "" {
			reply.Notes = append(reply.Notes, note)
		}
	}
	dev, err := configureNetwork(&cfg)
	if err != nil {
		return "", nil, err
	}
	reply.TunName, reply.Offload = dev.Name, dev.Offload
	msg, _ := json.Marshal(reply)
	err = tun.SendFiles(conn, dev.Files(), msg)
	dev.Close()
	if err != nil {
		return "", nil, err
	}
	// Wait for the go-ahead: the parent serves the device by now.
	n, err = conn.Read(buf)
	if err != nil || string(buf[:n]) != "go" {
		os.Exit(125)
	}
	return path, cfg.Command, nil
}

// configureNetwork brings lo up and creates and configures the TUN device.
func configureNetwork(cfg *childConfig) (*tun.Device, error) {
	if cfg.Unconfigured {
		return openUnconfigured(cfg)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("set lo up: %w", err)
	}
	mode, err := tun.ParseOffloadMode(cfg.Offload)
	if err != nil {
		return nil, err
	}
	dev, err := tun.Open(tun.Config{Name: cfg.TunName, Offload: mode, Queues: cfg.Queues, TAP: cfg.TAP})
	if err != nil {
		return nil, err
	}
	if err := configureLink(dev.Name, cfg); err != nil {
		dev.Close()
		return nil, err
	}
	return dev, nil
}

func configureLink(name string, cfg *childConfig) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkSetMTU(link, cfg.MTU); err != nil {
		return fmt.Errorf("set %s mtu %d: %w", name, cfg.MTU, err)
	}
	// Via netlink: the SIOCSIFTXQLEN ioctl is refused in a user namespace.
	if err := netlink.LinkSetTxQLen(link, cfg.TxQueueLen); err != nil {
		return fmt.Errorf("set %s txqueuelen %d: %w", name, cfg.TxQueueLen, err)
	}
	if cfg.MAC != "" {
		mac, err := net.ParseMAC(cfg.MAC)
		if err != nil {
			return fmt.Errorf("MAC address %q: %w", cfg.MAC, err)
		}
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("set %s address %s: %w", name, cfg.MAC, err)
		}
	}
	for _, p := range []struct {
		addr  netip.Prefix
		flags int
	}{{cfg.Addr4, 0}, {cfg.Addr6, unix.IFA_F_NODAD}} {
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
	for _, gw := range []netip.Addr{cfg.Gateway4, cfg.Gateway6} {
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
func openUnconfigured(cfg *childConfig) (*tun.Device, error) {
	mode, err := tun.ParseOffloadMode(cfg.Offload)
	if err != nil {
		return nil, err
	}
	dev, err := tun.Open(tun.Config{Name: cfg.TunName, Offload: mode, Queues: cfg.Queues, TAP: cfg.TAP})
	if err != nil {
		return nil, err
	}
	if link, err := netlink.LinkByName(dev.Name); err == nil && link.Attrs().TxQLen < cfg.TxQueueLen {
		netlink.LinkSetTxQLen(link, cfg.TxQueueLen)
	}
	return dev, nil
}

// mountResolvConf bind-mounts a file with content over /etc/resolv.conf in
// the child's private mount namespace. It returns a note when it could not.
func mountResolvConf(content string) string {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Sprintf("resolv.conf not replaced: make mounts private: %v", err)
	}
	if _, err := os.Stat("/etc/resolv.conf"); err != nil {
		return "the host has no /etc/resolv.conf to replace; point the sandbox's resolver at the DNS address yourself"
	}
	tmp, err := os.CreateTemp("", "tunstack-resolv-*")
	if err != nil {
		return fmt.Sprintf("resolv.conf not replaced: %v", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := tmp.WriteString(content); err != nil {
		return fmt.Sprintf("resolv.conf not replaced: %v", err)
	}
	os.Chmod(tmp.Name(), 0o644)
	if err := unix.Mount(tmp.Name(), "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		return fmt.Sprintf("resolv.conf not replaced: bind mount: %v", err)
	}
	return ""
}
