package harden

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// cleanupArg is argv[1] of the re-executed binary that removes a root
// instance's sockets once it has exited. The program's main must call
// CleanupMain when IsCleanup reports true.
const cleanupArg = "__tunstack-cleanup"

// IsCleanup reports whether this process is the cleanup helper.
func IsCleanup() bool { return len(os.Args) > 1 && os.Args[1] == cleanupArg }

// CleanupMain is the cleanup helper: it keeps only CAP_DAC_OVERRIDE (the
// sockets may sit in another user's directory), waits until tunstack is
// gone (its standard input, a pipe whose other end only tunstack holds,
// reaches EOF), removes those of its arguments that are still unix sockets,
// and exits.
//
// A root instance needs it because once it runs as nobody it can no longer
// unlink its control socket from root's 0700 directory. The helper never
// reads anything it acts on: the paths are fixed when it starts.
func CleanupMain() {
	if err := keepOnly([]uintptr{unix.CAP_DAC_OVERRIDE}); err != nil {
		fmt.Fprintf(os.Stderr, "tunstack cleanup: %v\n", err)
		os.Exit(1)
	}
	io.Copy(io.Discard, os.Stdin)
	for _, p := range os.Args[2:] {
		if st, err := os.Lstat(p); err == nil && st.Mode()&os.ModeSocket != 0 {
			os.Remove(p)
		}
	}
	os.Exit(0)
}

// startCleanup starts the cleanup helper for paths. The pipe's write end
// is a raw descriptor on purpose: no finalizer may close it, it closes when
// this process ends, however it ends.
func startCleanup(paths []string) error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("cleanup helper: pipe: %w", err)
	}
	r := os.NewFile(uintptr(p[0]), "cleanup-pipe")
	defer r.Close()
	cmd := exec.Command("/proc/self/exe", append([]string{cleanupArg}, paths...)...)
	cmd.Args[0] = "tunstack"
	cmd.Stdin, cmd.Stderr = r, os.Stderr
	// Its own process group: a ^C meant for the command must not end it
	// before tunstack has.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		unix.Close(p[1])
		return fmt.Errorf("cleanup helper: %w", err)
	}
	// Never waited for: it outlives this process and is reaped by init.
	cmd.Process.Release()
	return nil
}

// keepOnly leaves every thread with exactly the capabilities in keep
// (effective, permitted and bounding set), without changing user.
func keepOnly(keep []uintptr) error {
	mask, err := trimBounding(keep)
	if err != nil {
		return err
	}
	return capsetAll(mask)
}
