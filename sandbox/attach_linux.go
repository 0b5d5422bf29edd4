package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/fdpass"
	"github.com/tunstack/tunstack/tun"
)

// AttachConfig describes an existing network namespace to serve.
type AttachConfig struct {
	// PID is a process in the namespace; its user namespace is joined
	// when it differs from ours. Zero uses NetNS.
	PID int
	// NetNS is the namespace's path (/run/netns/NAME, /proc/PID/ns/net)
	// when PID is zero.
	NetNS string
	// UserNS, if set, is the user namespace to join with NetNS.
	UserNS string
	// Device is the device to create (or, TAP, open) and configure
	// there.
	Device DeviceConfig
}

// Attach creates and configures a TUN device in an existing namespace and
// returns it. Go cannot join a user namespace from a multithreaded process,
// so the namespace is entered by nsenter(1), which then executes this
// binary's child side there; the child passes the device back (SCM_RIGHTS)
// and exits.
func Attach(cfg AttachConfig) (*Sandbox, error) {
	dev, err := cfg.Device.prepared()
	if err != nil {
		return nil, err
	}
	cfg.Device = dev
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("sandbox: attach needs nsenter (util-linux): %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sandbox: find own executable: %w", err)
	}
	args, err := nsenterArgs(cfg)
	if err != nil {
		return nil, err
	}
	ctrl, childEnd, err := controlPair()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(nsenter, append(args, "--", self, childArg)...)
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{childEnd}
	err = cmd.Start()
	// Only the child holds its end now, so a child that dies during setup
	// (nsenter failing to enter) ends the handshake instead of hanging it.
	childEnd.Close()
	if err != nil {
		ctrl.Close()
		return nil, fmt.Errorf("sandbox: start nsenter: %w", err)
	}
	sb := &Sandbox{cmd: cmd, ctrl: ctrl, attachPID: cfg.PID, attached: true}
	err = sb.handshakeAttach(cfg)
	ctrl.Close()
	werr := cmd.Wait()
	if err != nil {
		if werr != nil {
			err = fmt.Errorf("%w (nsenter: %v)", err, werr)
		}
		return nil, err
	}
	return sb, nil
}

// nsenterArgs names the namespaces to join.
func nsenterArgs(cfg AttachConfig) ([]string, error) {
	if cfg.PID > 0 {
		netns := fmt.Sprintf("/proc/%d/ns/net", cfg.PID)
		if _, err := os.Stat(netns); err != nil {
			return nil, fmt.Errorf("sandbox: attach to pid %d: %w", cfg.PID, err)
		}
		args := []string{"--net=" + netns}
		theirs, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", cfg.PID))
		ours, err2 := os.Readlink("/proc/self/ns/user")
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("sandbox: attach to pid %d: read user namespaces: %v", cfg.PID, errors.Join(err1, err2))
		}
		if theirs != ours {
			args = append(args, fmt.Sprintf("--user=/proc/%d/ns/user", cfg.PID))
			if mapsToRoot(cfg.PID) {
				// nsenter would setgroups(), which a namespace made by
				// unshare --map-root-user denies; we are already its root.
				args = append(args, "--preserve-credentials")
			}
		}
		return args, nil
	}
	if cfg.NetNS == "" {
		return nil, errors.New("sandbox: attach needs a PID or a namespace path")
	}
	if _, err := os.Stat(cfg.NetNS); err != nil {
		return nil, fmt.Errorf("sandbox: attach to %s: %w", cfg.NetNS, err)
	}
	args := []string{"--net=" + cfg.NetNS}
	if cfg.UserNS != "" {
		args = append(args, "--user="+cfg.UserNS)
		if os.Geteuid() != 0 {
			// A rootless user namespace maps us to its root (see mapsToRoot).
			args = append(args, "--preserve-credentials")
		}
	}
	return args, nil
}

// mapsToRoot reports whether our effective uid and gid are uid and gid 0
// in the user namespace of process pid.
func mapsToRoot(pid int) bool {
	return idMapsToRoot(fmt.Sprintf("/proc/%d/uid_map", pid), os.Geteuid()) &&
		idMapsToRoot(fmt.Sprintf("/proc/%d/gid_map", pid), os.Getegid())
}

// idMapsToRoot reports whether id maps to 0 in the map file (lines of
// "inside outside count", as seen from our namespace).
func idMapsToRoot(path string, id int) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		var in, out, n int
		if _, err := fmt.Sscan(line, &in, &out, &n); err != nil {
			continue
		}
		if in == 0 && out == id && n > 0 {
			return true
		}
	}
	return false
}

func (sb *Sandbox) handshakeAttach(cfg AttachConfig) error {
	return sb.exchange(childConfig{Attach: true, Device: cfg.Device})
}

// attachSetup is the child side of Attach: it runs inside the namespace,
// configures the device, passes it back and exits.
func attachSetup(conn *net.UnixConn, cfg *childConfig) error {
	dev, err := configureNetwork(cfg)
	if err != nil {
		return err
	}
	msg, _ := json.Marshal(childReply{TunName: dev.Name, Offload: dev.Offload})
	err = fdpass.Send(conn, msg, dev.Files()...)
	dev.Close()
	if err != nil {
		return err
	}
	os.Exit(0)
	return nil
}

// AttachedPID is the target process of an attached sandbox (0 for one
// attached by namespace path).
func (sb *Sandbox) AttachedPID() int { return sb.attachPID }

// WaitGone blocks until the attached namespace is gone (its target process
// exited, or the TUN device was removed with the namespace) or stop is
// closed.
func (sb *Sandbox) WaitGone(stop <-chan struct{}) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if sb.attachPID > 0 && unix.Kill(sb.attachPID, 0) == unix.ESRCH {
			return
		}
		if !deviceAlive(sb.Device) {
			return
		}
	}
}

// deviceAlive asks the TUN device its name: once the namespace (and with
// it the interface) is gone, the descriptor answers EBADFD.
func deviceAlive(d *tun.Device) bool {
	raw, err := d.File.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	raw.Control(func(fd uintptr) {
		var req [unix.IFNAMSIZ + 64]byte
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(unix.TUNGETIFF), uintptrOf(&req[0]))
		alive = errno != unix.EBADFD && errno != unix.EBADF
	})
	return alive
}
