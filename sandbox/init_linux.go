package sandbox

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// initSignals are forwarded by the init child to the command: those
// tunstack forwards, and those sent to PID 1 from inside the sandbox.
var initSignals = []os.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGALRM,
}

// initMain is the init child: created by Start in the outer namespaces
// (user, mount, PID, and an empty network namespace), it mounts the
// covers, starts the exec child in the inner ones (user, mount, network),
// and then acts as init: it forwards signals to the command, reaps every
// process that ends up its child, and exits with the command's status.
// With a PID namespace, its exit kills everything left in the sandbox.
func initMain(conn *net.UnixConn, ctrl *os.File) {
	cfg, err := readConfig(conn)
	if err != nil {
		fail(conn, err)
	}
	// No one in the sandbox may ptrace or read the memory of the process
	// that mounted its covers (the commoncap rules refuse it already;
	// this holds even where they would not).
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	notes, err := prepareMounts(&cfg)
	if err != nil {
		fail(conn, err)
	}
	cfg.Notes = append(cfg.Notes, notes...)
	cmd, err := startExecChild(ctrl, &cfg)
	if err != nil {
		fail(conn, err)
	}
	// Opened now, while the exec child surely lives: its network
	// namespace is the command's.
	nsfd, nsErr := openNetNS(cmd.Process.Pid)
	conn.Close()
	ctrl.Close()
	go serveOwners(os.NewFile(4, "sandbox-owners"))
	go serveInner(os.NewFile(5, "sandbox-inner"), nsfd, nsErr)
	os.Exit(supervise(cmd))
}

// startExecChild starts the exec child with the control socket and its
// configuration (through a pipe, fd 4).
func startExecChild(ctrl *os.File, cfg *childConfig) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("config pipe: %w", err)
	}
	defer w.Close()
	cmd := exec.Command(self, childArg, roleExec)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{ctrl, r}
	if cmd.SysProcAttr, err = execChildAttr(cfg.Mode); err != nil {
		r.Close()
		return nil, err
	}
	err = cmd.Start()
	r.Close()
	if err != nil {
		return nil, explainInner(cfg.Mode, err)
	}
	if err := json.NewEncoder(w).Encode(cfg); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("send config to the exec child: %w", err)
	}
	return cmd, nil
}

// execChildAttr creates the command's namespaces: its own network and
// mount namespaces, owned (except in modeHost) by a new user namespace
// beneath ours. Owning its network namespace, the command can configure
// tun0; being beneath ours, it cannot unmount what we mounted, nor setns
// into a namespace it does not own. The command runs in its own process
// group, in the terminal's foreground when there is one, so terminal
// signals reach it (and not init) once.
func execChildAttr(mode string) (*syscall.SysProcAttr, error) {
	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
		Setpgid:    true,
	}
	if isTerminal(os.Stdin) {
		attr.Foreground = true
		attr.Ctty = 0
	}
	// Inside the init child's user namespace we are uid 0: map it to 0.
	switch mode {
	case modeRootless:
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	case modeRoot:
		uids, gids, err := identityMaps()
		if err != nil {
			return nil, err
		}
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings, attr.GidMappings = uids, gids
		attr.GidMappingsEnableSetgroups = setgroupsAllowed()
	}
	return attr, nil
}

// identityMaps map every uid and gid of our user namespace to itself in
// a new one: root stays root for file access. In the initial namespace
// that is the whole range; in a container, the ranges it has.
func identityMaps() (uids, gids []syscall.SysProcIDMap, err error) {
	if uids, err = identityMap("/proc/self/uid_map"); err != nil {
		return nil, nil, err
	}
	if gids, err = identityMap("/proc/self/gid_map"); err != nil {
		return nil, nil, err
	}
	return uids, gids, nil
}

// setgroupsAllowed reports whether our user namespace allows setgroups;
// a new one cannot allow it if ours does not (as under "unshare -r").
func setgroupsAllowed() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err != nil || strings.TrimSpace(string(b)) == "allow"
}

// identityMap reads an id map ("inside outside count" lines) and maps
// each inside range to itself.
func identityMap(path string) ([]syscall.SysProcIDMap, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var m []syscall.SysProcIDMap
	for _, line := range strings.Split(string(b), "\n") {
		var in, out, n uint64
		if _, err := fmt.Sscan(line, &in, &out, &n); err != nil {
			continue
		}
		m = append(m, syscall.SysProcIDMap{ContainerID: int(in), HostID: int(in), Size: int(n)})
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%s maps no ids", path)
	}
	return m, nil
}

// supervise forwards signals to the command and reaps children until the
// command exits; it returns the command's status as a shell reports it
// (128+N when killed by signal N).
func supervise(cmd *exec.Cmd) int {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, initSignals...)
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	pid := cmd.Process.Pid
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "tunstack: sandbox init: wait: %v\n", err)
			return 125
		}
		if got != pid {
			continue // an orphan adopted by init
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus()
		case ws.Signaled():
			return 128 + int(ws.Signal())
		}
	}
}

// explainInner names the fix when the command's namespaces cannot be
// created.
func explainInner(mode string, err error) error {
	switch {
	case !isNamespaceRefusal(err):
		return fmt.Errorf("start the command's namespaces: %w", err)
	case mode == modeRoot:
		return fmt.Errorf("create the command's user namespace: %w "+
			"(nested user namespaces may be limited: sysctl user.max_user_namespaces; --host-caps runs without one)", err)
	case mode == modeRootless:
		return fmt.Errorf("create the command's user namespace: %w "+
			"(nested user namespaces may be limited: sysctl user.max_user_namespaces)", err)
	}
	return fmt.Errorf("create the command's namespaces: %w", err)
}
